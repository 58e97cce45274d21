package nation.peer;

import java.util.ArrayDeque;
import nation.peer.Model.Action;
import nation.peer.Model.Game;
import nation.peer.Model.Item;
import nation.peer.Model.Nation;

/** {@code shared::apply} (shared/src/rules.rs), ported one to one. */
final class Rules {
    private Rules() {}

    static final long STARTING_GOLD = 100;
    static final long VISIT_GOLD = 10;
    static final long IDLE_GOLD_PER_INTERVAL = 1;
    static final long IDLE_INTERVAL_MS = 10_000;
    static final long MAX_IDLE_GOLD = 30;
    static final int MAX_LEVEL = 5;
    static final int RECENT_IDS_CAP = 64;

    enum Outcome { APPLIED, REJECTED, DUPLICATE }

    static long upgradeCost(Item item, int level) {
        return item.price * (level + 1L);
    }

    static int power(Nation nation) {
        int power = 0;
        for (Item item : Item.values()) {
            power += item.weight * nation.items.level(item);
        }
        return power;
    }

    static long visitIncome(long lastMs, long nowMs) {
        long idle = Math.max(0, nowMs - lastMs) / IDLE_INTERVAL_MS * IDLE_GOLD_PER_INTERVAL;
        return VISIT_GOLD + Math.min(idle, MAX_IDLE_GOLD);
    }

    /** Why {@code action} is refused (the rejection's wire code), or null if it may go ahead. */
    static String check(Game game, String playerId, Model.ActionType action) {
        Nation nation = game.state.players.get(playerId);
        if (action == Model.ActionType.JOIN) {
            return nation != null ? "already_joined" : null;
        }
        if (action == Model.ActionType.DEFAULT) {
            return null;
        }
        if (nation == null) {
            return "unknown_player";
        }
        long need;
        if (action.purchase != null) {
            if (nation.items.level(action.purchase) > 0) {
                return "already_owned";
            }
            need = action.purchase.price;
        } else {
            int level = nation.items.level(action.upgrade);
            if (level == 0) {
                return "item_missing";
            }
            if (level >= MAX_LEVEL) {
                return "max_level";
            }
            need = upgradeCost(action.upgrade, level);
        }
        return nation.gold < need ? "not_enough_gold" : null;
    }

    /**
     * Applies one action. A duplicate id changes nothing; otherwise the
     * version goes up and the id is remembered, applied or rejected.
     */
    static Outcome apply(Game game, Action action) {
        ArrayDeque<String> recent = game.state.recent_action_ids;
        if (recent.contains(action.event_id)) {
            return Outcome.DUPLICATE;
        }
        game.version++;
        if (recent.size() >= RECENT_IDS_CAP) {
            recent.pollFirst();
        }
        recent.addLast(action.event_id);
        if (check(game, action.player_id, action.event_type) != null) {
            return Outcome.REJECTED;
        }
        long now = action.received_at_ms;
        Nation nation = game.state.players.get(action.player_id);
        switch (action.event_type) {
            case JOIN -> game.state.players.put(action.player_id, newNation(action, now));
            case DEFAULT -> {
                if (nation == null) {
                    game.state.players.put(action.player_id, newNation(action, now));
                } else {
                    nation.gold += visitIncome(nation.last_action_ms, now);
                    nation.last_action_ms = Math.max(nation.last_action_ms, now);
                }
            }
            default -> {
                Model.ActionType type = action.event_type;
                Item item = type.purchase != null ? type.purchase : type.upgrade;
                long need = type.purchase != null ? item.price : upgradeCost(item, nation.items.level(item));
                nation.gold -= need;
                nation.items.raise(item);
                nation.power = power(nation);
                nation.last_action_ms = Math.max(nation.last_action_ms, now);
            }
        }
        return Outcome.APPLIED;
    }

    private static Nation newNation(Action action, long now) {
        Nation nation = new Nation();
        nation.name = action.name != null ? action.name : action.player_id;
        nation.gold = STARTING_GOLD;
        nation.last_action_ms = now;
        return nation;
    }
}
