package nation.peer;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Map;
import nation.peer.Model.Game;
import nation.peer.Model.Nation;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serializer;

/**
 * A compact binary form of a {@link Game} for the state store (and its
 * changelog). The store is read and written once per action; as JSON,
 * Jackson took about two thirds of the peer's CPU (mostly the 64 recent
 * action ids), so the store does not use JSON. The output topic does.
 */
final class GameCodec implements Serde<Game> {
    @Override
    public Serializer<Game> serializer() {
        return (topic, game) -> game == null ? null : encode(game);
    }

    @Override
    public Deserializer<Game> deserializer() {
        return (topic, bytes) -> bytes == null ? null : decode(bytes);
    }

    static byte[] encode(Game game) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream(1024);
        try (DataOutputStream out = new DataOutputStream(bytes)) {
            out.writeLong(game.game_id);
            out.writeLong(game.version);
            out.writeInt(game.state.players.size());
            for (Map.Entry<String, Nation> entry : game.state.players.entrySet()) {
                Nation nation = entry.getValue();
                out.writeUTF(entry.getKey());
                out.writeUTF(nation.name);
                out.writeLong(nation.gold);
                out.writeByte(nation.items.sword);
                out.writeByte(nation.items.shield);
                out.writeByte(nation.items.horse);
                out.writeByte(nation.items.knife);
                out.writeInt(nation.power);
                out.writeLong(nation.last_action_ms);
            }
            out.writeInt(game.state.recent_action_ids.size());
            for (String id : game.state.recent_action_ids) {
                out.writeUTF(id);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return bytes.toByteArray();
    }

    static Game decode(byte[] bytes) {
        Game game = new Game();
        try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(bytes))) {
            game.game_id = in.readLong();
            game.version = in.readLong();
            for (int i = in.readInt(); i > 0; i--) {
                String playerId = in.readUTF();
                Nation nation = new Nation();
                nation.name = in.readUTF();
                nation.gold = in.readLong();
                nation.items.sword = in.readByte();
                nation.items.shield = in.readByte();
                nation.items.horse = in.readByte();
                nation.items.knife = in.readByte();
                nation.power = in.readInt();
                nation.last_action_ms = in.readLong();
                game.state.players.put(playerId, nation);
            }
            for (int i = in.readInt(); i > 0; i--) {
                game.state.recent_action_ids.addLast(in.readUTF());
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return game;
    }
}
