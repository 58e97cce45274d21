//! The handling step: one `actions` record in, the game's new state out.
//!
//! Plain functions over plain types: no broker, no clock, no I/O. The Kafka
//! loop in [`crate::kafka`] feeds it records and flushes what it gathered into
//! one transaction per batch.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use rdkafka::Message;
use shared::{
    apply_changes, partition_for, ActionEnvelope, FighterRecord, Game, GameHead, GameSnapshot,
    GamesRecord, MatchRecord, Nation, NationRecord, Outcome, RejectedAction, Rejection,
    GAMES_SCHEMA_VERSION, SCHEMA_VERSION,
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
    /// The version at the last flush: where the current step starts.
    pub since: u64,
    /// Players whose nation (or arena fighter) the current step changed.
    pub changed: BTreeSet<String>,
    /// The current step changed the arena's round record.
    pub match_changed: bool,
    /// Ids applied since the last flush (the current batch).
    pub applied: Vec<String>,
    /// Actions rejected since the last flush.
    pub rejected: Vec<RejectedAction>,
    /// The batch touched this game: it gets one update at the next flush.
    pub dirty: bool,
    /// The action ids this game remembers ([`crate::seen`]).
    pub seen: Seen,
    /// Ids remembered since the last write of them: (player, id, time).
    pub seen_added: Vec<crate::seen::SeenId>,
    /// Keys of the `<games>.seen` records whose every id was forgotten since
    /// the last write: each gets a tombstone.
    pub seen_gone: Vec<std::sync::Arc<[u8]>>,
}

impl GameSlot {
    /// A slot restored from the game's records on `games`.
    pub fn from_snapshot(snapshot: &GameSnapshot) -> GameSlot {
        GameSlot {
            game: snapshot.game(),
            actions_offset: snapshot.actions_offset,
            since: snapshot.version,
            ..GameSlot::default()
        }
    }

    /// The game as a snapshot (what an interactive query answers).
    pub fn snapshot(&self) -> GameSnapshot {
        GameSnapshot {
            game_id: self.game.game_id,
            version: self.game.version,
            state: self.game.state.clone(),
            actions_offset: self.actions_offset,
        }
    }
}

/// What one engine step writes for one game: a record per nation it changed,
/// then the game's head (see [`shared::GamesRecord`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub nations: Vec<NationRecord>,
    /// Arena players changed (an arena's step has no nations).
    pub fighters: Vec<FighterRecord>,
    /// An arena's round, when it changed.
    pub arena_match: Option<MatchRecord>,
    pub head: GameHead,
}

impl Step {
    /// The step's records in the order they are written: the entities, then
    /// the head.
    pub fn records(self) -> Vec<GamesRecord> {
        let mut records: Vec<GamesRecord> =
            self.nations.into_iter().map(GamesRecord::Nation).collect();
        records.extend(self.fighters.into_iter().map(GamesRecord::Fighter));
        records.extend(self.arena_match.map(GamesRecord::Match));
        records.push(GamesRecord::Head(self.head));
        records
    }

    /// The step as a WebSocket update: what a reader of `games` folds its
    /// records into.
    pub fn delta(&self) -> shared::GameDelta {
        let head = &self.head;
        shared::GameDelta {
            game_id: head.game_id,
            since: head.since,
            version: head.version,
            nations: self
                .nations
                .iter()
                .map(|n| (n.player_id.clone(), n.nation.clone()))
                .collect(),
            fighters: self
                .fighters
                .iter()
                .map(|f| (f.player_id.clone(), f.fighter.clone()))
                .collect(),
            arena_match: self.arena_match.as_ref().map(|m| m.arena_match.clone()),
            applied: head.applied.clone(),
            rejected: head.rejected.clone(),
            actions_offset: head.actions_offset,
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

/// An `actions` record as the engine keeps it from poll to handling: where
/// it sits, when it was written, its key and value. Not its topic or headers,
/// which the engine never reads: copying them with the rest
/// (`BorrowedMessage::detach`) was a tenth of the engine's time (BENCHMARKS.md,
/// P3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// When the producer wrote it, in ms since the Unix epoch, if known.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

impl Record {
    /// The engine's copy of `msg`.
    pub fn of<M: Message>(msg: &M) -> Record {
        Record {
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp_ms: msg.timestamp().to_millis(),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
        }
    }
}

/// What the engine reads of an `actions` record: every field of
/// [`ActionEnvelope`], with the request's stamps (`Host`, `User-Agent`,
/// `Accept`, client address) checked as strings but borrowed from the record
/// and dropped, not copied: the rules never read them, and four owned
/// strings per action were most of the decoding's cost.
#[derive(serde::Deserialize)]
struct Incoming<'a> {
    event_id: String,
    game_id: u64,
    player_id: String,
    event_type: shared::ActionType,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "Host", default, borrow)]
    _host: Cow<'a, str>,
    #[serde(rename = "User-Agent", default, borrow)]
    _user_agent: Cow<'a, str>,
    #[serde(rename = "Accept", default, borrow)]
    _accept: Cow<'a, str>,
    #[serde(rename = "client_addr", borrow)]
    _client_addr: Cow<'a, str>,
    received_at_ms: u64,
    schema_version: u32,
}

/// Decodes an `actions` record value into what the rules read (the
/// request's stamps are left empty: see [`Incoming`]), refusing versions
/// newer than this engine reads (older ones are what it wrote before: still
/// readable). What it accepts is exactly what decodes as an
/// [`ActionEnvelope`].
pub fn decode(payload: Option<&[u8]>) -> Result<ActionEnvelope, String> {
    let bytes = payload.ok_or_else(|| "empty record value".to_string())?;
    let action: Incoming<'_> = serde_json::from_slice(shared::framing::json(bytes))
        .map_err(|e| format!("undecodable action: {e}"))?;
    if action.schema_version > SCHEMA_VERSION || action.schema_version == 0 {
        return Err(format!(
            "unknown schema_version {} (this engine reads {SCHEMA_VERSION})",
            action.schema_version
        ));
    }
    Ok(ActionEnvelope {
        event_id: action.event_id,
        game_id: action.game_id,
        player_id: action.player_id,
        event_type: action.event_type,
        name: action.name,
        host: String::new(),
        user_agent: String::new(),
        accept: String::new(),
        client_addr: String::new(),
        received_at_ms: action.received_at_ms,
        schema_version: action.schema_version,
    })
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
    handle_keeping(
        games,
        None,
        &Record::of(record),
        partitions,
        DEFAULT_WINDOW_MS,
    )
}

/// How to get back a game's slot as the current batch found it, at a cost
/// that does not grow with the game: the slot without its nations and its
/// remembered ids, a journal of what the batch did to the ids
/// ([`crate::seen::Journal`]), and the former value of each nation the
/// batch touched. The rules change only the
/// acting player's nation ([`shared::apply_changes`]), so that is all that
/// needs keeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undo {
    /// The slot as the batch found it, with no nations and no ids.
    base: GameSlot,
    /// What the batch did to the ids the game remembers.
    seen: crate::seen::Journal,
    /// Each nation the batch touched, as it was (`None`: it did not exist).
    nations: HashMap<String, Option<Nation>>,
}

impl Undo {
    /// Keeps what is needed to bring `slot` back to where it is now.
    fn of(slot: &mut GameSlot) -> Undo {
        let players = std::mem::take(&mut slot.game.state.players);
        let seen = std::mem::take(&mut slot.seen);
        let base = slot.clone();
        slot.game.state.players = players;
        slot.seen = seen;
        Undo {
            base,
            seen: crate::seen::Journal::of(&slot.seen),
            nations: HashMap::new(),
        }
    }

    /// Notes `player`'s nation in `slot` before an action of theirs.
    fn keep(&mut self, slot: &GameSlot, player: &str) {
        if !self.nations.contains_key(player) {
            let nation = slot.game.state.players.get(player).cloned();
            self.nations.insert(player.to_string(), nation);
        }
    }

    /// The slot as the batch found it, built from `current` (the slot now).
    pub fn restore(self, current: GameSlot) -> GameSlot {
        let mut players = current.game.state.players;
        for (player, nation) in self.nations {
            match nation {
                Some(nation) => players.insert(player, nation),
                None => players.remove(&player),
            };
        }
        let mut seen = current.seen;
        seen.undo(self.seen);
        let mut slot = self.base;
        slot.game.state.players = players;
        slot.seen = seen;
        slot
    }
}

/// [`handle`], keeping in `undo` how to bring back each game's slot as it
/// was before the current batch first touched it (so an update that cannot
/// be written can be redone action by action).
pub fn handle_keeping(
    games: &mut HashMap<u64, GameSlot>,
    undo: Option<&mut HashMap<u64, Undo>>,
    record: &Record,
    partitions: i32,
    window_ms: u64,
) -> Handled {
    let action = decode(record.payload.as_deref());
    handle_decoded(games, undo, record, action, partitions, window_ms)
}

/// [`handle_keeping`] of one record, with the way back to the slot as it
/// was just before it, whatever the batch did before ([`Undo`]: its cost
/// does not grow with the game, where a copy of the slot would).
pub fn handle_undoable(
    games: &mut HashMap<u64, GameSlot>,
    record: &Record,
    partitions: i32,
    window_ms: u64,
) -> (Handled, Option<Undo>) {
    let action = decode(record.payload.as_deref());
    let mut undo = HashMap::new();
    let game_id = action.as_ref().ok().map(|a| a.game_id);
    if let Some(slot) = game_id.and_then(|id| games.get_mut(&id)) {
        undo.insert(slot.game.game_id, Undo::of(slot));
    }
    let handled = handle_decoded(
        games,
        Some(&mut undo),
        record,
        action,
        partitions,
        window_ms,
    );
    (handled, game_id.and_then(|id| undo.remove(&id)))
}

/// [`handle_keeping`] of a record already decoded ([`decode`] of its
/// value): decoding can run apart, on another thread.
pub fn handle_decoded(
    games: &mut HashMap<u64, GameSlot>,
    undo: Option<&mut HashMap<u64, Undo>>,
    record: &Record,
    action: Result<ActionEnvelope, String>,
    partitions: i32,
    window_ms: u64,
) -> Handled {
    let action = match action {
        Ok(action) => action,
        Err(error) => return Handled::DeadLetter { error },
    };
    let game_id = action.game_id;
    let home = partition_for(game_id, partitions);
    if record.partition != home {
        // Another partitioner, or a changed partition count: applying it
        // would let two engines own one game.
        return Handled::DeadLetter {
            error: format!(
                "misrouted: game {game_id} belongs on partition {home} of {partitions}, the record is on partition {}",
                record.partition
            ),
        };
    }
    let offset = record.offset;
    let slot = games.entry(game_id).or_insert_with(|| GameSlot {
        game: Game::new(game_id),
        ..GameSlot::default()
    });
    if slot.actions_offset.is_some_and(|stored| offset <= stored) {
        return Handled::AlreadyIncluded { game_id };
    }
    let mut kept = match undo {
        Some(undo) => {
            if !slot.dirty {
                undo.entry(game_id).or_insert_with(|| Undo::of(slot));
            }
            undo.get_mut(&game_id)
        }
        None => None,
    };
    slot.actions_offset = Some(offset);
    slot.dirty = true;
    let verdict = slot.seen.check(
        &action.player_id,
        &action.event_id,
        action.received_at_ms,
        window_ms,
    );
    let outcome = match verdict {
        Verdict::Duplicate => None,
        Verdict::Expired => {
            // Refused like any rejection: the version moves, nothing else.
            slot.game.version += 1;
            Some(Outcome::Rejected(Rejection::Expired))
        }
        Verdict::New(at) => {
            if let Some(kept) = kept.as_deref_mut() {
                kept.keep(slot, &action.player_id);
            }
            let effect = apply_changes(&mut slot.game, &action);
            slot.changed.extend(effect.fighters);
            slot.match_changed |= effect.match_changed;
            let outcome = effect.outcome;
            slot.seen.remember_noting(
                &action.player_id,
                &action.event_id,
                at,
                kept.as_deref_mut().map(|k| &mut k.seen),
            );
            slot.seen_added
                .push((action.player_id.clone(), action.event_id.clone(), at));
            Some(outcome)
        }
    };
    let gone =
        slot.seen
            .advance_noting(action.received_at_ms, window_ms, kept.map(|k| &mut k.seen));
    slot.seen_gone.extend(gone);
    match outcome {
        Some(Outcome::Applied) => {
            // What changed was marked above, from the rules' own list.
            slot.applied.push(action.event_id);
            Handled::Applied { game_id }
        }
        Some(Outcome::Rejected(reason)) => {
            slot.rejected.push(RejectedAction {
                event_id: action.event_id,
                player_id: action.player_id,
                reason,
                action: Some(action.event_type),
            });
            Handled::Rejected { game_id }
        }
        None => Handled::Duplicate { game_id },
    }
}

/// The step `slot` would be written as now (the nations changed and the
/// ids handled since its last step), without clearing anything.
pub fn pending_step(slot: &GameSlot) -> Step {
    let game = &slot.game;
    let nations: Vec<NationRecord> = slot
        .changed
        .iter()
        .filter_map(|player| {
            game.state.players.get(player).map(|nation| NationRecord {
                game_id: game.game_id,
                player_id: player.clone(),
                version: game.version,
                nation: nation.clone(),
            })
        })
        .collect();
    let arena = game.state.arena.as_ref();
    let fighters: Vec<FighterRecord> = arena
        .map(|arena| {
            slot.changed
                .iter()
                .filter_map(|player| {
                    arena.fighters.get(player).map(|fighter| FighterRecord {
                        game_id: game.game_id,
                        player_id: player.clone(),
                        version: game.version,
                        fighter: fighter.clone(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let arena_match = arena
        .filter(|_| slot.match_changed)
        .map(|arena| MatchRecord {
            game_id: game.game_id,
            version: game.version,
            arena_match: arena.arena_match.clone(),
        });
    let changed = nations.len() + fighters.len() + usize::from(arena_match.is_some());
    let players = game.state.players.len() + arena.map_or(0, |a| a.fighters.len());
    Step {
        head: GameHead {
            game_id: game.game_id,
            since: slot.since,
            version: game.version,
            changed: changed as u32,
            players: players as u64,
            applied: slot.applied.clone(),
            rejected: slot.rejected.clone(),
            actions_offset: slot.actions_offset,
            schema_version: GAMES_SCHEMA_VERSION,
        },
        nations,
        fighters,
        arena_match,
    }
}

/// Takes `slot`'s step: [`pending_step`], and the batch's marks cleared.
pub fn take_step(slot: &mut GameSlot) -> Step {
    let step = pending_step(slot);
    slot.dirty = false;
    slot.since = slot.game.version;
    slot.changed.clear();
    slot.match_changed = false;
    slot.applied.clear();
    slot.rejected.clear();
    step
}

/// One step per game the batch touched (conflation): the nations changed,
/// every id applied or rejected in the batch, the last offset included.
/// Clears the batch's marks.
pub fn flush(games: &mut HashMap<u64, GameSlot>) -> Vec<Step> {
    let mut steps: Vec<Step> = games
        .values_mut()
        .filter(|slot| slot.dirty)
        .map(take_step)
        .collect();
    steps.sort_by_key(|s| s.head.game_id);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{OwnedMessage, Timestamp};
    use shared::{ActionType, Rejection};
    use std::sync::Arc;

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
            &Record::of(&rec(&join, 0)),
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
            &Record::of(&rec(&buy, 1)),
            N,
            DEFAULT_WINDOW_MS,
        );
        super::handle_keeping(
            &mut games,
            Some(&mut undo),
            &Record::of(&rec(&visit, 2)),
            N,
            DEFAULT_WINDOW_MS,
        );
        assert_eq!(games[&1].game.version, 3);
        assert_eq!(pending_step(&games[&1]).head.applied, vec!["a2", "a3"]);
        let found = undo.remove(&1).unwrap().restore(games[&1].clone());
        assert_eq!(found.game.version, 1, "as the batch found it");
        assert_eq!(found.actions_offset, Some(0));
        assert_eq!(found.game.state.players["p"].items.knife, 0);
        assert_eq!(found.game.state.players["p"].gold, 100);
    }

    #[test]
    fn brings_back_a_big_game_from_the_nations_a_batch_touched() {
        let mut games = HashMap::new();
        let mut offset = 0;
        let mut next = |games: &mut HashMap<u64, GameSlot>,
                        undo: Option<&mut HashMap<u64, Undo>>,
                        a: &ActionEnvelope| {
            offset += 1;
            super::handle_keeping(
                games,
                undo,
                &Record::of(&rec(a, offset)),
                N,
                DEFAULT_WINDOW_MS,
            )
        };
        for i in 0..50 {
            let join = action(&format!("j{i}"), 1, &format!("p{i}"), ActionType::Join);
            next(&mut games, None, &join);
        }
        flush(&mut games);
        let before = games[&1].clone();
        let mut undo = HashMap::new();
        let batch = [
            action("b1", 1, "p3", ActionType::PurchaseKnife),
            action("b2", 1, "new", ActionType::Join),
            action("b3", 1, "p3", ActionType::UpgradeSword),
            action("b4", 1, "p7", ActionType::Default),
            action("b5", 1, "nobody", ActionType::PurchaseSword),
            action("b1", 1, "p3", ActionType::PurchaseKnife),
        ];
        for a in &batch {
            next(&mut games, Some(&mut undo), a);
        }
        assert_ne!(games[&1], before, "the batch changed the game");
        let found = undo.remove(&1).unwrap().restore(games[&1].clone());
        assert_eq!(
            found, before,
            "every nation, id and mark as the batch found them"
        );
    }

    #[test]
    fn brings_back_the_ids_a_batch_remembered_and_forgot() {
        let w = 100;
        let at = |id: &str, player: &str, t: ActionType, ms: u64| ActionEnvelope {
            received_at_ms: ms,
            ..action(id, 1, player, t)
        };
        let mut games = HashMap::new();
        let mut offset = 0;
        let mut next = |games: &mut HashMap<u64, GameSlot>,
                        undo: Option<&mut HashMap<u64, Undo>>,
                        a: &ActionEnvelope| {
            offset += 1;
            super::handle_keeping(games, undo, &Record::of(&rec(a, offset)), N, w)
        };
        next(&mut games, None, &at("j", "p", ActionType::Join, 1_000));
        next(&mut games, None, &at("v1", "p", ActionType::Default, 1_050));
        flush(&mut games);
        let slot = games.get_mut(&1).unwrap();
        slot.seen_added.clear();
        slot.seen.stored(Arc::from(&b"r1"[..]), 1_050);
        let before = games[&1].clone();
        let mut undo = HashMap::new();
        // Forgets both ids and drops their record, remembers "j" again
        // (a retry once forgotten), repeats an id of its own.
        for a in [
            at("v2", "p", ActionType::Default, 1_200),
            at("j", "p", ActionType::Default, 1_210),
            at("v2", "p", ActionType::Default, 1_220),
            at("v3", "p", ActionType::Default, 1_400),
        ] {
            next(&mut games, Some(&mut undo), &a);
        }
        assert!(!games[&1].seen.contains("p", "v1"));
        assert_eq!(games[&1].seen_gone, vec![Arc::<[u8]>::from(&b"r1"[..])]);
        let found = undo.remove(&1).unwrap().restore(games[&1].clone());
        assert_eq!(found, before, "ids, times, records and now as they were");
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
        let steps = flush(&mut games);
        assert_eq!(steps.len(), 1);
        let u = &steps[0].head;
        assert_eq!(
            (u.game_id, u.since, u.version, u.actions_offset),
            (1, 0, 2, Some(1))
        );
        assert_eq!(u.applied, vec!["a1", "a2"]);
        assert_eq!(u.changed, 1);
        assert_eq!(steps[0].nations[0].nation.items.knife, 1);
        assert!(flush(&mut games).is_empty(), "a flush clears the batch");
    }

    #[test]
    fn an_arena_step_writes_the_players_and_round_it_changed_once() {
        let id = shared::arena::ARENA_IDS.start + 3;
        let at = |a: &str, p: &str, t, ms| ActionEnvelope {
            name: Some(p.to_string()),
            ..ActionEnvelope::new(a, id, p, t, ms)
        };
        let mut games = HashMap::new();
        handle(&mut games, &rec(&at("j1", "a", ActionType::Join, 1_000), 0));
        handle(&mut games, &rec(&at("j2", "b", ActionType::Join, 1_000), 1));
        let steps = flush(&mut games);
        assert_eq!(steps[0].fighters.len(), 2);
        let m = steps[0].arena_match.as_ref().expect("the round starts");
        assert_eq!(m.arena_match.phase, shared::arena::Phase::Playing);
        assert_eq!(steps[0].head.changed, 3);
        assert_eq!(steps[0].head.players, 2);
        let step = at("m1", "a", ActionType::MoveRight, 2_000);
        assert_eq!(
            handle(&mut games, &rec(&step, 2)),
            Handled::Applied { game_id: id }
        );
        assert_eq!(
            handle(&mut games, &rec(&step, 3)),
            Handled::Duplicate { game_id: id }
        );
        let steps = flush(&mut games);
        assert_eq!(steps[0].fighters.len(), 1, "only the mover");
        assert!(steps[0].arena_match.is_none(), "the round did not change");
        assert_eq!(
            (
                steps[0].fighters[0].fighter.x,
                steps[0].fighters[0].fighter.y
            ),
            (1, 9)
        );
        assert_eq!(steps[0].head.changed, 1);
        // What a reader folds is the engine's state.
        let mut fold = shared::GamesFold::default();
        let mut games2 = HashMap::new();
        for (i, a) in [
            at("j1", "a", ActionType::Join, 1_000),
            at("j2", "b", ActionType::Join, 1_000),
            at("m1", "a", ActionType::MoveRight, 2_000),
        ]
        .iter()
        .enumerate()
        {
            handle(&mut games2, &rec(a, i as i64));
            for step in flush(&mut games2) {
                for r in step.records() {
                    fold.push(r);
                }
            }
        }
        assert_eq!(fold.games[&id].game(), games[&id].game);
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
        flush(&mut games);
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
        assert_eq!(u.head.rejected[0].reason, Rejection::Expired);
        assert!(u.nations.is_empty(), "never applied");
        assert_eq!(games[&1].game.state.players["p"].items.knife, 0);
    }

    #[test]
    fn records_rejections_with_their_reason() {
        let mut games = HashMap::new();
        let upgrade = action("a1", 1, "ghost", ActionType::UpgradeSword);
        assert_eq!(
            handle(&mut games, &rec(&upgrade, 0)),
            Handled::Rejected { game_id: 1 }
        );
        let u = flush(&mut games).remove(0).head;
        assert_eq!(u.version, 1);
        assert_eq!(u.rejected[0].reason, Rejection::UnknownPlayer);
        assert!(u.applied.is_empty());
        assert_eq!(u.changed, 0);
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
        let step = flush(&mut games).remove(0);
        // A new engine restores from the records, then the record is
        // redelivered (aborted transaction, crash before commit) under a new
        // id or not.
        let mut fold = shared::GamesFold::default();
        for n in step.nations {
            fold.push(shared::GamesRecord::Nation(n));
        }
        fold.push(shared::GamesRecord::Head(step.head));
        let mut restored = HashMap::from([(1, GameSlot::from_snapshot(&fold.games[&1]))]);
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
    fn takes_one_action_back_in_the_middle_of_a_batch() {
        let mut games = HashMap::new();
        handle(&mut games, &rec(&action("a0", 1, "p", ActionType::Join), 0));
        flush(&mut games);
        for i in 1..50 {
            let a = action(&format!("a{i}"), 1, "p", ActionType::Default);
            handle(&mut games, &rec(&a, i));
        }
        assert!(games[&1].dirty, "mid-batch");
        let before = games[&1].clone();
        let knife = action("k", 1, "p", ActionType::PurchaseKnife);
        let (handled, undo) = handle_undoable(
            &mut games,
            &Record::of(&rec(&knife, 50)),
            N,
            DEFAULT_WINDOW_MS,
        );
        assert_eq!(handled, Handled::Applied { game_id: 1 });
        assert_ne!(games[&1], before);
        let current = games.remove(&1).unwrap();
        assert_eq!(undo.expect("an undo").restore(current), before);
    }

    #[test]
    fn decodes_what_an_envelope_decodes_leaving_the_stamps_out() {
        let sent = ActionEnvelope {
            name: Some("Ys".into()),
            host: "game.example".into(),
            user_agent: "Mozilla/5.0 \"quoted\" \u{e9}".into(),
            accept: "*/*".into(),
            ..action("a1", 7, "p", ActionType::Join)
        };
        let bytes = serde_json::to_vec(&sent).unwrap();
        let got = decode(Some(&bytes)).unwrap();
        assert_eq!(
            got,
            ActionEnvelope {
                host: String::new(),
                user_agent: String::new(),
                accept: String::new(),
                client_addr: String::new(),
                ..sent
            }
        );
        // What an envelope refuses, the engine refuses: a missing client
        // address, a stamp that is not a string.
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let whole = value.clone();
        value.as_object_mut().unwrap().remove("client_addr");
        let missing = serde_json::to_vec(&value).unwrap();
        assert!(serde_json::from_slice::<ActionEnvelope>(&missing).is_err());
        assert!(decode(Some(&missing)).unwrap_err().contains("client_addr"));
        let mut value = whole;
        value["Host"] = serde_json::json!(42);
        let number = serde_json::to_vec(&value).unwrap();
        assert!(serde_json::from_slice::<ActionEnvelope>(&number).is_err());
        assert!(decode(Some(&number)).is_err());
    }

    #[test]
    fn conflates_one_update_per_game() {
        let mut games = HashMap::new();
        for (i, g) in [1u64, 2, 1, 2, 1].into_iter().enumerate() {
            let a = action(&format!("a{i}"), g, &format!("p{i}"), ActionType::Join);
            handle(&mut games, &rec(&a, i as i64));
        }
        let steps = flush(&mut games);
        assert_eq!(steps.len(), 2);
        let shape = |s: &Step| (s.head.version, s.head.applied.len(), s.nations.len());
        assert_eq!(shape(&steps[0]), (3, 3, 3));
        assert_eq!(shape(&steps[1]), (2, 2, 2));
    }
}
