package nation.peer;

import java.time.Duration;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import nation.peer.Model.Action;
import nation.peer.Model.Game;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.LogAndContinueExceptionHandler;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The engine's job as a Kafka Streams application: consume {@code actions}
 * (keyed by game id), keep each game's state in a RocksDB store, apply the
 * rules, write the game's new state to the output topic, exactly once.
 *
 * <pre>
 * java -cp 'target/streams-peer.jar:target/libs/*' nation.peer.StreamsPeer \
 *   --brokers 127.0.0.1:9092 --input actions --output games-streams \
 *   --application-id streams-peer [streams.setting=value ...]
 * </pre>
 *
 * Flags fall back to KAFKA_BROKERS, ACTIONS_TOPIC, GAMES_TOPIC and
 * APPLICATION_ID; any {@code key=value} argument is a Streams setting.
 */
public final class StreamsPeer {
    /** The newest action layout the peer reads: the engine's {@code SCHEMA_VERSION}. */
    static final int SCHEMA_VERSION = 2;

    private StreamsPeer() {}

    /**
     * The records are keyed by game id already (and on partition game id mod
     * partitions), so the aggregation needs no repartition topic. The state
     * store is Streams' default, RocksDB with a changelog topic, holding
     * {@link GameCodec} bytes; its record cache (on by default) conflates the
     * output to one record per game and commit, as the engine writes one
     * update per game and transaction. The output goes to the same partition
     * as on the engine's {@code games} topic.
     */
    static Topology topology(String input, String output) {
        Serde<Action> actions = new JsonSerde<>(Action.class);
        Serde<Game> games = new JsonSerde<>(Game.class);
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), actions))
                // The versions the engine reads (shared::SCHEMA_VERSION, 2 since
                // the arena's action types); it sends newer ones to its
                // dead-letter topic.
                .filter((key, action) -> action != null
                        && action.schema_version >= 1 && action.schema_version <= SCHEMA_VERSION)
                .groupByKey(Grouped.with(Serdes.String(), actions))
                .aggregate(
                        Game::new,
                        (key, action, game) -> {
                            game.game_id = action.game_id;
                            Rules.apply(game, action);
                            return game;
                        },
                        Materialized.<String, Game, KeyValueStore<Bytes, byte[]>>as("games")
                                .withKeySerde(Serdes.String())
                                .withValueSerde(new GameCodec()))
                .toStream()
                .to(output, Produced.with(Serdes.String(), games)
                        .withStreamPartitioner((topic, key, game, partitions) ->
                                Optional.of(Set.of((int) (game.game_id % partitions)))));
        return builder.build();
    }

    public static void main(String[] args) throws InterruptedException {
        String brokers = System.getenv().getOrDefault("KAFKA_BROKERS", "127.0.0.1:9092");
        String input = System.getenv().getOrDefault("ACTIONS_TOPIC", "actions");
        String output = System.getenv().getOrDefault("GAMES_TOPIC", "games-streams");
        String applicationId = System.getenv().getOrDefault("APPLICATION_ID", "streams-peer");
        Properties settings = new Properties();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            switch (arg) {
                case "--brokers" -> brokers = args[++i];
                case "--input" -> input = args[++i];
                case "--output" -> output = args[++i];
                case "--application-id" -> applicationId = args[++i];
                default -> {
                    int eq = arg.indexOf('=');
                    if (eq <= 0) {
                        System.err.println("unknown argument " + arg + " (flags: --brokers --input --output --application-id; settings: key=value)");
                        System.exit(2);
                    }
                    settings.put(arg.substring(0, eq), arg.substring(eq + 1));
                }
            }
        }

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, "2");
        props.put(StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG,
                LogAndContinueExceptionHandler.class.getName());
        props.putAll(settings);

        KafkaStreams streams = new KafkaStreams(topology(input, output), props);
        CountDownLatch stopped = new CountDownLatch(1);
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                stopped.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(10));
            stopped.countDown();
        }));
        streams.start();
        stopped.await();
        streams.close(Duration.ofSeconds(10));
    }
}
