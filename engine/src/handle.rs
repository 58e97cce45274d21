//! The handling step: one `actions` record in, the game's new state out.
//!
//! Plain functions over plain types: no broker, no clock, no I/O. The Kafka
//! loop in [`crate::kafka`] feeds it records and flushes what it gathered into
//! one transaction per batch.

use std::collections::HashMap;

use rdkafka::Message;
use shared::{
    apply, partition_for, ActionEnvelope, Game, GameUpdate, Outcome, RejectedAction, Rejection,
    SCHEMA_VERSION,
};

use crate::seen::{Seen, Verdict, DEFAULT_WINDOW_MS};

/// One game held by the engine: its state, where on its `actions` partition
/// that state stands, and what the current batch did to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GameSlot {
    pub game: Game,
    /// Offset on the game's `actions` partition of the last action included in
    /// `game`. A redelivered record at or below it is skipped: this is what
    /// makes a crash's redelivery a no-op, even on a broker that shows
    /// aborted records to `read_committed` readers.
    pub actions_offset: Option<i64>,
    /// Ids applied since the last flush (the current batch).
    pub applied: Vec<String>,
    /// Actions rejected since the last flush.
    pub rejected: Vec<RejectedAction>,
    /// The batch touched this game: it gets one update at the next flush.
    pub dirty: bool,
    /// The action ids this game remembers ([`crate::seen`]).
    pub seen: Seen,
    /// Ids remembered since the last write of them: (player, id, time).
    pub seen_added: Vec<(String, String, u64)>,
    /// Ids forgotten since the last write of them: (player, id).
    pub seen_gone: Vec<(String, String)>,
}

impl GameSlot {
    /// A slot restored from the latest update on `games`.
    pub fn from_update(update: &GameUpdate) -> GameSlot {
        GameSlot {
            game: update.game(),
            actions_offset: update.actions_offset,
            ..GameSlot::default()
        }
    }
}

/// What [`handle`] did with one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// The rules applied the action.
    Applied { game_id: u64 },
    /// The rules refused it (recorded in the game's update).
    Rejected { game_id: u64 },
    /// The action id was seen before: nothing changed.
    Duplicate { game_id: u64 },
    /// The record is at or below the game's stored offset: already included.
    AlreadyIncluded { game_id: u64 },
    /// The record cannot be handled; it goes to the dead-letter topic.
    DeadLetter { error: String },
}

/// Decodes an `actions` record value, refusing unknown schema versions.
pub fn decode(payload: Option<&[u8]>) -> Result<ActionEnvelope, String> {
    let bytes = payload.ok_or_else(|| "empty record value".to_string())?;
    let action: ActionEnvelope =
        serde_json::from_slice(bytes).map_err(|e| format!("undecodable action: {e}"))?;
    if action.schema_version != SCHEMA_VERSION {
        return Err(format!(
            "unknown schema_version {} (this engine reads {SCHEMA_VERSION})",
            action.schema_version
        ));
    }
    Ok(action)
}

/// Handles one `actions` record against the games in `games`: decode, check
/// that the record sits on its game's partition of `partitions`, skip what
/// the stored offset already includes, run [`shared::apply`], remember the id
/// as applied or rejected for the next flush.
pub fn handle<M: Message>(
    games: &mut HashMap<u64, GameSlot>,
    record: &M,
    partitions: i32,
) -> Handled {
    handle_keeping(games, None, record, partitions, DEFAULT_WINDOW_MS)
}

/// [`handle`], keeping in `undo` each game's slot as it was before the
/// current batch first touched it (so an update that cannot be written can
/// be redone action by action).
pub fn handle_keeping<M: Message>(
    games: &mut HashMap<u64, GameSlot>,
    undo: Option<&mut HashMap<u64, GameSlot>>,
    record: &M,
    partitions: i32,
    window_ms: u64,
) -> Handled {
    let action = match decode(record.payload()) {
        Ok(action) => action,
        Err(error) => return Handled::DeadLetter { error },
    };
    let game_id = action.game_id;
    let home = partition_for(game_id, partitions);
    if record.partition() != home {
        // Another partitioner, or a changed partition count: applying it
        // would let two engines own one game.
        return Handled::DeadLetter {
            error: format!(
                "misrouted: game {game_id} belongs on partition {home} of {partitions}, the record is on partition {}",
                record.partition()
            ),
        };
    }
    let offset = record.offset();
    let slot = games.entry(game_id).or_insert_with(|| GameSlot {
        game: Game::new(game_id),
        ..GameSlot::default()
    });
    if slot.actions_offset.is_some_and(|stored| offset <= stored) {
        return Handled::AlreadyIncluded { game_id };
    }
    if let Some(undo) = undo {
        if !slot.dirty {
            undo.entry(game_id).or_insert_with(|| slot.clone());
        }
    }
    slot.actions_offset = Some(offset);
    slot.dirty = true;
    let verdict = slot.seen.check(
        &action.player_id,
        &action.event_id,
        action.received_at_ms,
        window_ms,
    );
    let outcome = match verdict {
        Verdict::Duplicate => Outcome::Duplicate,
        Verdict::Expired => {
            // Refused like any rejection: the version moves, nothing else.
            slot.game.version += 1;
            Outcome::Rejected(Rejection::Expired)
        }
        Verdict::New(at) => {
            let outcome = apply(&mut slot.game, &action);
            if outcome != Outcome::Duplicate {
                slot.seen.remember(&action.player_id, &action.event_id, at);
                slot.seen_added
                    .push((action.player_id.clone(), action.event_id.clone(), at));
            }
            outcome
        }
    };
    let gone = slot.seen.advance(action.received_at_ms, window_ms);
    slot.seen_gone.extend(gone);
    match outcome {
        Outcome::Applied => {
            slot.applied.push(action.event_id);
            Handled::Applied { game_id }
        }
        Outcome::Rejected(reason) => {
            slot.rejected.push(RejectedAction {
                event_id: action.event_id,
                player_id: action.player_id,
                reason,
            });
            Handled::Rejected { game_id }
        }
        Outcome::Duplicate => Handled::Duplicate { game_id },
    }
}

/// The update `slot` would be written as now (its state and the ids handled
/// since its last update), without clearing anything.
pub fn pending_update(slot: &GameSlot) -> GameUpdate {
    GameUpdate {
        game_id: slot.game.game_id,
        version: slot.game.version,
        state: slot.game.state.clone(),
        applied: slot.applied.clone(),
        rejected: slot.rejected.clone(),
        actions_offset: slot.actions_offset,
    }
}

/// Takes `slot`'s update: [`pending_update`], and the batch's marks cleared.
pub fn take_update(slot: &mut GameSlot) -> GameUpdate {
    slot.dirty = false;
    GameUpdate {
        game_id: slot.game.game_id,
        version: slot.game.version,
        state: slot.game.state.clone(),
        applied: std::mem::take(&mut slot.applied),
        rejected: std::mem::take(&mut slot.rejected),
        actions_offset: slot.actions_offset,
    }
}

/// One update per game the batch touched (conflation): the latest state, every
/// id applied or rejected in the batch, the last offset included. Clears the
/// batch's marks.
pub fn flush(games: &mut HashMap<u64, GameSlot>) -> Vec<GameUpdate> {
    let mut updates: Vec<GameUpdate> = games
        .values_mut()
        .filter(|slot| slot.dirty)
        .map(take_update)
        .collect();
    updates.sort_by_key(|u| u.game_id);
    updates
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{OwnedMessage, Timestamp};
    use shared::{ActionType, Rejection};

    fn action(id: &str, game_id: u64, player: &str, event_type: ActionType) -> ActionEnvelope {
        ActionEnvelope {
            client_addr: "127.0.0.1".to_string(),
            ..ActionEnvelope::new(id, game_id, player, event_type, 1_000)
        }
    }

    /// Partitions of the tests' topic.
    const N: i32 = 4;

    fn record_on(partition: i32, payload: Vec<u8>, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload),
            Some(b"1".to_vec()),
            "actions".to_string(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    fn record(payload: Vec<u8>, offset: i64) -> OwnedMessage {
        record_on(1, payload, offset)
    }

    /// The action on its game's partition.
    fn rec(a: &ActionEnvelope, offset: i64) -> OwnedMessage {
        record_on(
            partition_for(a.game_id, N),
            serde_json::to_vec(a).unwrap(),
            offset,
        )
    }

    fn handle(games: &mut HashMap<u64, GameSlot>, record: &OwnedMessage) -> Handled {
        super::handle(games, record, N)
    }

    #[test]
    fn a_record_off_its_games_partition_is_a_dead_letter() {
        let mut games = HashMap::new();
        let join = action("a1", 6, "p", ActionType::Join);
        let misrouted = record_on(1, serde_json::to_vec(&join).unwrap(), 0);
        match handle(&mut games, &misrouted) {
            Handled::DeadLetter { error } => assert!(
                error.contains("game 6 belongs on partition 2 of 4")
                    && error.contains("on partition 1"),
                "{error}"
            ),
            other => panic!("expected a dead letter, got {other:?}"),
        }
        assert!(games.is_empty(), "nothing applied");
    }

    #[test]
    fn keeps_each_game_as_the_batch_found_it() {
        let mut games = HashMap::new();
        let mut undo = HashMap::new();
        let join = action("a1", 1, "p", ActionType::Join);
        super::handle_keeping(
            &mut games,
            Some(&mut undo),
            &rec(&join, 0),
            N,
            DEFAULT_WINDOW_MS,
        );
        flush(&mut games);
        undo.clear();
        let buy = action("a2", 1, "p", ActionType::PurchaseKnife);
        let visit = action("a3", 1, "p", ActionType::Default);
        super::handle_keeping(
            &mut games,
            Some(&mut undo),
            &rec(&buy, 1),
            N,
            DEFAULT_WINDOW_MS,
        );
        super::handle_keeping(
            &mut games,
            Some(&mut undo),
            &rec(&visit, 2),
            N,
            DEFAULT_WINDOW_MS,
        );
        assert_eq!(undo[&1].game.version, 1, "as the batch found it");
        assert_eq!(undo[&1].actions_offset, Some(0));
        assert_eq!(games[&1].game.version, 3);
        assert_eq!(pending_update(&games[&1]).applied, vec!["a2", "a3"]);
    }

    #[test]
    fn applies_a_join_and_a_purchase_in_one_update() {
        let mut games = HashMap::new();
        let join = action("a1", 1, "p", ActionType::Join);
        let buy = action("a2", 1, "p", ActionType::PurchaseKnife);
        assert_eq!(
            handle(&mut games, &rec(&join, 0)),
            Handled::Applied { game_id: 1 }
        );
        assert_eq!(
            handle(&mut games, &rec(&buy, 1)),
            Handled::Applied { game_id: 1 }
        );
        let updates = flush(&mut games);
        assert_eq!(updates.len(), 1);
        let u = &updates[0];
        assert_eq!((u.game_id, u.version, u.actions_offset), (1, 2, Some(1)));
        assert_eq!(u.applied, vec!["a1", "a2"]);
        assert_eq!(u.state.players["p"].items.knife, 1);
        assert!(flush(&mut games).is_empty(), "a flush clears the batch");
    }

    #[test]
    fn an_id_is_refused_after_any_number_of_other_actions() {
        let mut games = HashMap::new();
        let join = action("a0", 1, "p", ActionType::Join);
        handle(&mut games, &rec(&join, 0));
        let knife = action("knife", 1, "p", ActionType::PurchaseKnife);
        assert_eq!(
            handle(&mut games, &rec(&knife, 1)),
            Handled::Applied { game_id: 1 }
        );
        for i in 0..1_000 {
            let visit = action(&format!("v{i}"), 1, "p", ActionType::Default);
            handle(&mut games, &rec(&visit, 2 + i));
        }
        let gold = games[&1].game.state.players["p"].gold;
        let version = games[&1].game.version;
        assert_eq!(
            handle(&mut games, &rec(&knife, 5_000)),
            Handled::Duplicate { game_id: 1 }
        );
        assert_eq!(games[&1].game.state.players["p"].gold, gold);
        assert_eq!(games[&1].game.version, version);
        assert_eq!(games[&1].seen.len(), 1_002);
    }

    #[test]
    fn an_id_older_than_the_window_is_refused_as_expired() {
        let mut games = HashMap::new();
        let join = action("a0", 1, "p", ActionType::Join);
        handle(&mut games, &rec(&join, 0));
        // A UUIDv7 id from two days before the stamp.
        let two_days = 2 * DEFAULT_WINDOW_MS;
        let t = 1_000 + two_days;
        let old_ms: u64 = 1_000;
        let old_id = format!(
            "{:08x}-{:04x}-7000-8000-000000000000",
            old_ms >> 16,
            old_ms & 0xffff
        );
        let mut late = action(&old_id, 1, "p", ActionType::PurchaseKnife);
        late.received_at_ms = t;
        assert_eq!(
            handle(&mut games, &rec(&late, 1)),
            Handled::Rejected { game_id: 1 }
        );
        let u = flush(&mut games).remove(0);
        assert_eq!(u.rejected[0].reason, Rejection::Expired);
        assert_eq!(u.state.players["p"].items.knife, 0, "never applied");
    }

    #[test]
    fn records_rejections_with_their_reason() {
        let mut games = HashMap::new();
        let upgrade = action("a1", 1, "ghost", ActionType::UpgradeSword);
        assert_eq!(
            handle(&mut games, &rec(&upgrade, 0)),
            Handled::Rejected { game_id: 1 }
        );
        let u = flush(&mut games).remove(0);
        assert_eq!(u.version, 1);
        assert_eq!(u.rejected[0].reason, Rejection::UnknownPlayer);
        assert!(u.applied.is_empty());
    }

    #[test]
    fn same_action_id_twice_is_applied_once() {
        let mut games = HashMap::new();
        let join = action("a1", 1, "p", ActionType::Join);
        handle(&mut games, &rec(&join, 0));
        assert_eq!(
            handle(&mut games, &rec(&join, 1)),
            Handled::Duplicate { game_id: 1 }
        );
        assert_eq!(games[&1].game.version, 1);
    }

    #[test]
    fn skips_records_the_restored_state_already_includes() {
        let mut games = HashMap::new();
        let join = action("a1", 1, "p", ActionType::Join);
        handle(&mut games, &rec(&join, 5));
        let update = flush(&mut games).remove(0);
        // A new engine restores from the update, then the record is redelivered
        // (aborted transaction, crash before commit) under a new id or not.
        let mut restored = HashMap::from([(1, GameSlot::from_update(&update))]);
        let other = action("a2", 1, "p", ActionType::Default);
        assert_eq!(
            handle(&mut restored, &rec(&other, 5)),
            Handled::AlreadyIncluded { game_id: 1 }
        );
        assert!(flush(&mut restored).is_empty());
        assert_eq!(
            handle(&mut restored, &rec(&other, 6)),
            Handled::Applied { game_id: 1 }
        );
    }

    #[test]
    fn garbage_and_unknown_schema_go_to_the_dead_letter_topic() {
        let mut games = HashMap::new();
        assert!(matches!(
            handle(&mut games, &record(b"not json".to_vec(), 0)),
            Handled::DeadLetter { .. }
        ));
        let mut future = action("a1", 1, "p", ActionType::Join);
        future.schema_version = 99;
        match handle(&mut games, &rec(&future, 1)) {
            Handled::DeadLetter { error } => assert!(error.contains("schema_version 99")),
            other => panic!("expected a dead letter, got {other:?}"),
        }
        assert!(games.is_empty());
    }

    #[test]
    fn conflates_one_update_per_game() {
        let mut games = HashMap::new();
        for (i, g) in [1u64, 2, 1, 2, 1].into_iter().enumerate() {
            let a = action(&format!("a{i}"), g, &format!("p{i}"), ActionType::Join);
            handle(&mut games, &rec(&a, i as i64));
        }
        let updates = flush(&mut games);
        assert_eq!(updates.len(), 2);
        assert_eq!((updates[0].version, updates[0].applied.len()), (3, 3));
        assert_eq!((updates[1].version, updates[1].applied.len()), (2, 2));
    }
}
