package nation.peer;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonValue;
import java.util.ArrayDeque;
import java.util.TreeMap;

/**
 * The wire and state types of {@code shared/src/wire.rs} and
 * {@code shared/src/state.rs}, with the same JSON field names, so the peer
 * reads the engine's envelopes and writes states the bench can compare.
 */
final class Model {
    private Model() {}

    /** An {@code ActionEnvelope}; the request headers are not needed. */
    @JsonIgnoreProperties(ignoreUnknown = true)
    static final class Action {
        public String event_id;
        public long game_id;
        public String player_id;
        public ActionType event_type;
        public String name;
        public long received_at_ms;
        public int schema_version;
    }

    enum Item {
        SWORD(50, 3), SHIELD(40, 2), HORSE(80, 4), KNIFE(20, 1);

        final long price;
        final int weight;

        Item(long price, int weight) {
            this.price = price;
            this.weight = weight;
        }
    }

    enum ActionType {
        JOIN("join", null, null),
        DEFAULT("default", null, null),
        PURCHASE_SWORD("purchase_sword", Item.SWORD, null),
        PURCHASE_SHIELD("purchase_shield", Item.SHIELD, null),
        PURCHASE_HORSE("purchase_horse", Item.HORSE, null),
        PURCHASE_KNIFE("purchase_knife", Item.KNIFE, null),
        UPGRADE_SWORD("upgrade_sword", null, Item.SWORD),
        UPGRADE_SHIELD("upgrade_shield", null, Item.SHIELD);

        private final String wire;
        /** The item a purchase buys, or null. */
        final Item purchase;
        /** The item an upgrade improves, or null. */
        final Item upgrade;

        ActionType(String wire, Item purchase, Item upgrade) {
            this.wire = wire;
            this.purchase = purchase;
            this.upgrade = upgrade;
        }

        @JsonValue
        String wire() {
            return wire;
        }
    }

    /** Item levels; 0 means not owned. */
    static final class Items {
        public int sword;
        public int shield;
        public int horse;
        public int knife;

        int level(Item item) {
            return switch (item) {
                case SWORD -> sword;
                case SHIELD -> shield;
                case HORSE -> horse;
                case KNIFE -> knife;
            };
        }

        void raise(Item item) {
            switch (item) {
                case SWORD -> sword++;
                case SHIELD -> shield++;
                case HORSE -> horse++;
                case KNIFE -> knife++;
            }
        }
    }

    static final class Nation {
        public String name;
        public long gold;
        public Items items = new Items();
        public int power;
        public long last_action_ms;
    }

    static final class GameState {
        /** Sorted, as the engine's BTreeMap. */
        public TreeMap<String, Nation> players = new TreeMap<>();
        public ArrayDeque<String> recent_action_ids = new ArrayDeque<>();
    }

    /** A {@code Game}: also what the peer writes (a {@code GameUpdate} without the per-update lists). */
    static final class Game {
        public long game_id;
        public long version;
        public GameState state = new GameState();
    }
}
