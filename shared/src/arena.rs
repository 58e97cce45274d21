//! The 5v5 arena: a real-time second game on the same pipes (issue 18).
//!
//! Pure and deterministic like the nation's rules: no clock, no randomness,
//! no I/O. The only time is the acting envelope's `received_at_ms` (the
//! bridge's stamp), so the engine, `engine replay` and the browser's
//! prediction reach the same state from the same actions.
//!
//! ## Which games are arenas
//! The kind is fixed by the game id: ids in [`ARENA_IDS`]
//! (1,000,000,000,000 to 1,999,999,999,999) are arenas, every other id is a
//! nation game ([`GameKind::of`]). Everyone (bridge, engine, lake, browser)
//! knows a game's kind from its id alone, before any state exists.
//!
//! ## The board
//! [`WIDTH`] × [`HEIGHT`] (8 × 10) cells, `x` from the left, `y` from the
//! bottom (row 9 at the top, as in the seed), walls where the seed draws
//! `XXXX` ([`WALLS`]). Team A spawns on rows 9 and 7, team B on rows 0–1
//! ([`spawn`]); seats 1–5 per team.
//!
//! ## The rules
//! | what | rule |
//! |---|---|
//! | `join` | seats the player in the team with fewer players (A on a tie), in its lowest free seat; an 11th player is refused `team_full`. The match starts (`playing`) with the join that gives both teams a player; a player who joins a running match enters it at once |
//! | `move_up/down/left/right` | one cell; refused `blocked` by an edge, a wall or a standing player |
//! | `throw_up/down/left/right` (W/S/A/D) | the grenade flies up to [`THROW_RANGE`] (4) cells in a straight line, stops on the first standing player in its way or before a wall or edge, and bursts there: every *opponent* standing within one cell (the 3×3 square) loses [`BURST_DAMAGE`] (1) of their [`MAX_HP`] (3) health. No friendly fire: a burst never hurts the thrower's team. A throw straight into an adjacent wall or edge is refused `blocked` and costs nothing; with no grenade left it is refused `no_grenades` |
//! | health 0 | the player is eliminated: off the board (neither blocks nor is hit), acts no more (`eliminated`); the thrower's `kills` go up |
//! | rate | a player acts at most once per [`MIN_INTERVAL_MS`] (100 ms) of stamps; faster actions are refused `too_fast` and change nothing, so flooding gains nothing |
//! | end | a team wins when the other has nobody standing (`eliminated`); when nobody standing holds a grenade (`out_of_grenades`) or the first action stamped [`MATCH_MS`] (3 min) or more after the start arrives (`time`, that action is refused `match_over`), the team with more players standing wins, then the one with more health, else a draw |
//! | `rematch` | after the end, any player starts the next round: everyone back to their seat's spawn with full health and [`GRENADES`] (5) grenades; the score of rounds won is kept |
//! | refused | `unknown_player`, `already_joined`, `team_full`, `not_started` (lobby), `match_over`, `match_not_over` (rematch while playing), `wrong_game` (a nation action) |

use std::collections::BTreeMap;
use std::ops::Range;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules::Rejection;
use crate::state::Game;
use crate::wire::{ActionEnvelope, ActionType};

/// Game ids that are arenas; every other id is a nation game.
pub const ARENA_IDS: Range<u64> = 1_000_000_000_000..2_000_000_000_000;
/// Columns.
pub const WIDTH: u8 = 8;
/// Rows (row 0 at the bottom).
pub const HEIGHT: u8 = 10;
/// Players per team.
pub const TEAM_SIZE: usize = 5;
/// Grenades each player starts a round with.
pub const GRENADES: u8 = 5;
/// Health each player starts a round with.
pub const MAX_HP: u8 = 3;
/// Health a burst takes from each opponent it reaches.
pub const BURST_DAMAGE: u8 = 1;
/// How far a grenade flies, in cells.
pub const THROW_RANGE: u8 = 4;
/// The shortest gap between two actions of one player, in stamp time.
pub const MIN_INTERVAL_MS: u64 = 100;
/// How long a round lasts at most, in stamp time.
pub const MATCH_MS: u64 = 180_000;

/// The walls, `(x, y)`, as the seed draws them.
pub const WALLS: [(u8, u8); 12] = [
    (2, 7),
    (3, 7),
    (6, 7),
    (7, 7),
    (0, 5),
    (1, 5),
    (6, 4),
    (7, 4),
    (1, 2),
    (2, 2),
    (6, 2),
    (7, 2),
];

/// What a game is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GameKind {
    /// Build a Nation.
    Nation,
    /// The 5v5 arena.
    Arena,
}

impl GameKind {
    /// The kind of game `game_id` (see [`ARENA_IDS`]).
    pub fn of(game_id: u64) -> GameKind {
        if ARENA_IDS.contains(&game_id) {
            GameKind::Arena
        } else {
            GameKind::Nation
        }
    }

    /// The wire name (`nation`, `arena`).
    pub fn as_str(self) -> &'static str {
        match self {
            GameKind::Nation => "nation",
            GameKind::Arena => "arena",
        }
    }
}

/// A team.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Team {
    A,
    B,
}

impl Team {
    /// The other team.
    pub fn other(self) -> Team {
        match self {
            Team::A => Team::B,
            Team::B => Team::A,
        }
    }

    /// `"A"` or `"B"`.
    pub fn label(self) -> &'static str {
        match self {
            Team::A => "A",
            Team::B => "B",
        }
    }
}

/// A direction on the board (`up` is towards row 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    Up,
    Down,
    Left,
    Right,
}

impl Dir {
    /// The cell next to `(x, y)` in this direction, if it is on the board.
    pub fn step(self, (x, y): (u8, u8)) -> Option<(u8, u8)> {
        let (nx, ny) = match self {
            Dir::Up => (Some(x), y.checked_add(1)),
            Dir::Down => (Some(x), y.checked_sub(1)),
            Dir::Left => (x.checked_sub(1), Some(y)),
            Dir::Right => (x.checked_add(1), Some(y)),
        };
        match (nx, ny) {
            (Some(nx), Some(ny)) if nx < WIDTH && ny < HEIGHT => Some((nx, ny)),
            _ => None,
        }
    }
}

/// One arena player.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Fighter {
    pub name: String,
    pub team: Option<Team>,
    /// Seat 1–5 in the team: where the player spawns.
    pub seat: u8,
    pub x: u8,
    pub y: u8,
    /// 0 = eliminated.
    pub hp: u8,
    pub grenades: u8,
    /// Opponents this player eliminated, over every round (absent: 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kills: u32,
    /// Stamp of the player's last action that counted (the rate limit).
    pub last_ms: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Fighter {
    /// Still in the round.
    pub fn standing(&self) -> bool {
        self.hp > 0
    }

    /// The player's cell.
    pub fn cell(&self) -> (u8, u8) {
        (self.x, self.y)
    }
}

/// Where a round stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for both teams to have a player.
    #[default]
    Lobby,
    Playing,
    Over,
}

/// How a round ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// One team has nobody standing.
    Eliminated,
    /// Nobody standing holds a grenade.
    OutOfGrenades,
    /// [`MATCH_MS`] passed.
    Time,
}

/// A grenade's burst: where, whose, and the game version of the throw (so a
/// page animates each burst once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Burst {
    pub x: u8,
    pub y: u8,
    pub team: Team,
    pub version: u64,
}

/// The round: phase, clock, result, the score over rounds, the last burst.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ArenaMatch {
    /// 1 for the first round, one more per rematch.
    pub round: u32,
    pub phase: Phase,
    /// Stamp of the action that started the round.
    pub started_ms: u64,
    /// The winner of the round once over; `None` for a draw (or not over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<Team>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<EndReason>,
    /// Rounds won by A.
    pub wins_a: u32,
    /// Rounds won by B.
    pub wins_b: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<Burst>,
}

/// An arena's whole state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ArenaState {
    /// Players by player id.
    pub fighters: BTreeMap<String, Fighter>,
    #[serde(rename = "match")]
    pub arena_match: ArenaMatch,
}

impl ArenaState {
    /// Players seated in `team`.
    pub fn team_size(&self, team: Team) -> usize {
        self.fighters
            .values()
            .filter(|f| f.team == Some(team))
            .count()
    }

    /// Players of `team` still standing.
    pub fn standing(&self, team: Team) -> usize {
        self.fighters
            .values()
            .filter(|f| f.team == Some(team) && f.standing())
            .count()
    }

    /// The standing player on `cell`, if any.
    pub fn at(&self, cell: (u8, u8)) -> Option<&str> {
        self.fighters
            .iter()
            .find(|(_, f)| f.standing() && f.cell() == cell)
            .map(|(id, _)| id.as_str())
    }

    /// Whether `cell` is free: on the board, no wall, nobody standing.
    pub fn free(&self, cell: (u8, u8)) -> bool {
        cell.0 < WIDTH && cell.1 < HEIGHT && !is_wall(cell) && self.at(cell).is_none()
    }
}

/// Whether `(x, y)` is a wall.
pub fn is_wall(cell: (u8, u8)) -> bool {
    WALLS.contains(&cell)
}

/// The spawn cell of seat `seat` (1–5) of `team`, as the seed draws them.
pub fn spawn(team: Team, seat: u8) -> (u8, u8) {
    let a = [(0, 9), (5, 7), (2, 9), (4, 9), (6, 9)];
    let b = [(0, 0), (3, 1), (4, 0), (7, 1), (7, 0)];
    let i = usize::from(seat.clamp(1, 5) - 1);
    match team {
        Team::A => a[i],
        Team::B => b[i],
    }
}

/// What an action asks of the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    Join,
    Move(Dir),
    Throw(Dir),
    Rematch,
}

impl Intent {
    /// The arena intent of an action type; `None` for the nation's actions.
    pub fn of(action: ActionType) -> Option<Intent> {
        Some(match action {
            ActionType::Join => Intent::Join,
            ActionType::MoveUp => Intent::Move(Dir::Up),
            ActionType::MoveDown => Intent::Move(Dir::Down),
            ActionType::MoveLeft => Intent::Move(Dir::Left),
            ActionType::MoveRight => Intent::Move(Dir::Right),
            ActionType::ThrowUp => Intent::Throw(Dir::Up),
            ActionType::ThrowDown => Intent::Throw(Dir::Down),
            ActionType::ThrowLeft => Intent::Throw(Dir::Left),
            ActionType::ThrowRight => Intent::Throw(Dir::Right),
            ActionType::Rematch => Intent::Rematch,
            _ => return None,
        })
    }
}

/// What one arena action changed: the players whose state changed and
/// whether the round's record did. A rejection changes nothing, except the
/// action that finds the time up: it ends the round (`match_changed`) and is
/// refused `match_over`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub fighters: Vec<String>,
    pub match_changed: bool,
}

/// Checks whether `player_id` may do `action` at `now_ms`, without changing
/// anything: the page greys out and predicts with it. Does not know about the
/// time limit's end (that needs the action to arrive), nor the rate limit
/// when `now_ms` is `None`.
pub fn check(
    state: &ArenaState,
    player_id: &str,
    action: ActionType,
    now_ms: Option<u64>,
) -> Result<(), Rejection> {
    let intent = Intent::of(action).ok_or(Rejection::WrongGame)?;
    let fighter = state.fighters.get(player_id);
    let phase = state.arena_match.phase;
    let Some(fighter) = fighter else {
        return match intent {
            Intent::Join if state.fighters.len() >= 2 * TEAM_SIZE => Err(Rejection::TeamFull),
            Intent::Join => Ok(()),
            _ => Err(Rejection::UnknownPlayer),
        };
    };
    if intent == Intent::Join {
        return Err(Rejection::AlreadyJoined);
    }
    if let Some(now) = now_ms {
        let next = fighter.last_ms.saturating_add(MIN_INTERVAL_MS);
        if fighter.last_ms > 0 && now < next {
            return Err(Rejection::TooFast {
                wait_ms: next.saturating_sub(now).min(MIN_INTERVAL_MS),
            });
        }
    }
    match (intent, phase) {
        (Intent::Rematch, Phase::Over) => return Ok(()),
        (Intent::Rematch, _) => return Err(Rejection::MatchNotOver),
        (_, Phase::Lobby) => return Err(Rejection::NotStarted),
        (_, Phase::Over) => return Err(Rejection::MatchOver),
        _ => {}
    }
    if !fighter.standing() {
        return Err(Rejection::Eliminated);
    }
    match intent {
        Intent::Move(dir) => match dir.step(fighter.cell()) {
            Some(cell) if state.free(cell) => Ok(()),
            _ => Err(Rejection::Blocked),
        },
        Intent::Throw(dir) => {
            if fighter.grenades == 0 {
                return Err(Rejection::NoGrenades);
            }
            match dir.step(fighter.cell()) {
                Some(cell) if !is_wall(cell) => Ok(()),
                _ => Err(Rejection::Blocked),
            }
        }
        Intent::Join | Intent::Rematch => Ok(()),
    }
}

/// Where a grenade thrown from `from` towards `dir` bursts, if it leaves the
/// thrower's cell: the first standing player's cell in its way, else the last
/// free cell before a wall, an edge or the end of its range.
pub fn flight(state: &ArenaState, from: (u8, u8), dir: Dir) -> Option<(u8, u8)> {
    let mut at = None;
    let mut cell = from;
    for _ in 0..THROW_RANGE {
        match dir.step(cell) {
            Some(next) if !is_wall(next) => {
                cell = next;
                at = Some(next);
                if state.at(next).is_some() {
                    break;
                }
            }
            _ => break,
        }
    }
    at
}

/// Applies one arena action; `game.version` has already been raised by the
/// caller ([`crate::rules::apply_changes`]). The state is untouched on a
/// rejection, except a round whose time is up (see [`Changes`]).
pub fn apply(game: &mut Game, action: &ActionEnvelope) -> (Result<(), Rejection>, Changes) {
    let mut state = game.state.arena.take().unwrap_or_default();
    let out = apply_to(&mut state, game.version, action);
    // An arena nobody joined stays without state, as a reader of its
    // records (there are none) sees it.
    if state != ArenaState::default() {
        game.state.arena = Some(state);
    }
    out
}

fn apply_to(
    state: &mut ArenaState,
    version: u64,
    action: &ActionEnvelope,
) -> (Result<(), Rejection>, Changes) {
    let now = action.received_at_ms;
    let mut changes = Changes::default();
    let m = &state.arena_match;
    if m.phase == Phase::Playing && now >= m.started_ms.saturating_add(MATCH_MS) {
        end_round(state, EndReason::Time);
        changes.match_changed = true;
        if action.event_type != ActionType::Join {
            return (Err(Rejection::MatchOver), changes);
        }
    }
    if let Err(r) = check(state, &action.player_id, action.event_type, Some(now)) {
        return (Err(r), changes);
    }
    let player = action.player_id.clone();
    let intent = Intent::of(action.event_type).ok_or(Rejection::WrongGame);
    match intent {
        Ok(Intent::Join) => {
            let team = if state.team_size(Team::B) < state.team_size(Team::A) {
                Team::B
            } else {
                Team::A
            };
            let seat = (1..=TEAM_SIZE as u8)
                .find(|s| {
                    !state
                        .fighters
                        .values()
                        .any(|f| f.team == Some(team) && f.seat == *s)
                })
                .unwrap_or(1);
            let (x, y) = free_near(state, spawn(team, seat));
            let name = action.name.clone().unwrap_or_else(|| player.clone());
            state.fighters.insert(
                player.clone(),
                Fighter {
                    name,
                    team: Some(team),
                    seat,
                    x,
                    y,
                    hp: MAX_HP,
                    grenades: GRENADES,
                    kills: 0,
                    last_ms: now,
                },
            );
            changes.fighters.push(player);
            let m = &mut state.arena_match;
            if m.round == 0 {
                m.round = 1;
                changes.match_changed = true;
            }
            if m.phase == Phase::Lobby
                && state.team_size(Team::A) > 0
                && state.team_size(Team::B) > 0
            {
                let m = &mut state.arena_match;
                m.phase = Phase::Playing;
                m.started_ms = now;
                changes.match_changed = true;
            }
        }
        Ok(Intent::Move(dir)) => {
            if let Some(f) = state.fighters.get_mut(&player) {
                if let Some((x, y)) = dir.step(f.cell()) {
                    (f.x, f.y) = (x, y);
                }
                f.last_ms = now;
            }
            changes.fighters.push(player);
        }
        Ok(Intent::Throw(dir)) => {
            let Some(thrower) = state.fighters.get(&player).cloned() else {
                return (Err(Rejection::UnknownPlayer), changes);
            };
            let team = thrower.team.unwrap_or(Team::A);
            let at = flight(state, thrower.cell(), dir).unwrap_or(thrower.cell());
            let mut kills = 0;
            for (id, f) in state.fighters.iter_mut() {
                let near = f.x.abs_diff(at.0) <= 1 && f.y.abs_diff(at.1) <= 1;
                if f.standing() && near && f.team != Some(team) {
                    f.hp = f.hp.saturating_sub(BURST_DAMAGE);
                    if f.hp == 0 {
                        kills += 1;
                    }
                    changes.fighters.push(id.clone());
                }
            }
            if let Some(f) = state.fighters.get_mut(&player) {
                f.grenades = f.grenades.saturating_sub(1);
                f.kills += kills;
                f.last_ms = now;
            }
            changes.fighters.push(player);
            changes.fighters.sort();
            state.arena_match.burst = Some(Burst {
                x: at.0,
                y: at.1,
                team,
                version,
            });
            changes.match_changed = true;
            if state.standing(team.other()) == 0 {
                end_round(state, EndReason::Eliminated);
            } else if !state
                .fighters
                .values()
                .any(|f| f.standing() && f.grenades > 0)
            {
                end_round(state, EndReason::OutOfGrenades);
            }
        }
        Ok(Intent::Rematch) => {
            // Everyone leaves the board first, so seats do not clash.
            for f in state.fighters.values_mut() {
                f.hp = 0;
            }
            let ids: Vec<String> = state.fighters.keys().cloned().collect();
            let mut order: Vec<(Team, u8, String)> = ids
                .iter()
                .map(|id| {
                    let f = &state.fighters[id];
                    (f.team.unwrap_or(Team::A), f.seat, id.clone())
                })
                .collect();
            order.sort();
            for (team, seat, id) in order {
                let cell = free_near(state, spawn(team, seat));
                if let Some(f) = state.fighters.get_mut(&id) {
                    (f.x, f.y) = cell;
                    f.hp = MAX_HP;
                    f.grenades = GRENADES;
                    if id == player {
                        f.last_ms = now;
                    }
                }
            }
            changes.fighters = ids;
            let m = &mut state.arena_match;
            m.round += 1;
            m.phase = Phase::Playing;
            m.started_ms = now;
            m.winner = None;
            m.end = None;
            m.burst = None;
            changes.match_changed = true;
        }
        Err(r) => return (Err(r), changes),
    }
    (Ok(()), changes)
}

/// Ends the round: the winner by who is standing, then health.
fn end_round(state: &mut ArenaState, reason: EndReason) {
    let score = |team| {
        let standing = state.standing(team);
        let hp: u32 = state
            .fighters
            .values()
            .filter(|f| f.team == Some(team))
            .map(|f| u32::from(f.hp))
            .sum();
        (standing, hp)
    };
    let (a, b) = (score(Team::A), score(Team::B));
    let winner = match a.cmp(&b) {
        std::cmp::Ordering::Greater => Some(Team::A),
        std::cmp::Ordering::Less => Some(Team::B),
        std::cmp::Ordering::Equal => None,
    };
    let m = &mut state.arena_match;
    m.phase = Phase::Over;
    m.end = Some(reason);
    m.winner = winner;
    match winner {
        Some(Team::A) => m.wins_a += 1,
        Some(Team::B) => m.wins_b += 1,
        None => {}
    }
}

/// The free cell nearest `cell` (by Manhattan distance, then bottom-to-top,
/// left-to-right): where a player spawns when their seat's cell is taken.
fn free_near(state: &ArenaState, cell: (u8, u8)) -> (u8, u8) {
    if state.free(cell) {
        return cell;
    }
    let mut best: Option<(u8, u8, u8)> = None;
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            if !state.free((x, y)) {
                continue;
            }
            let d = x.abs_diff(cell.0) + y.abs_diff(cell.1);
            if best.is_none_or(|(bd, _, _)| d < bd) {
                best = Some((d, x, y));
            }
        }
    }
    best.map(|(_, x, y)| (x, y)).unwrap_or(cell)
}

/// The board as text, row 9 at the top (`A2-5` = player of seat 2 of team A
/// with 5 grenades, `XXXX` a wall): for logs, tests and terminals.
pub fn render(state: &ArenaState) -> String {
    let mut out = String::new();
    for y in (0..HEIGHT).rev() {
        out.push_str(&y.to_string());
        for x in 0..WIDTH {
            let cell = if is_wall((x, y)) {
                "XXXX".to_string()
            } else if let Some(id) = state.at((x, y)) {
                let f = &state.fighters[id];
                format!(
                    "{}{}-{}",
                    f.team.unwrap_or(Team::A).label(),
                    f.seat,
                    f.grenades
                )
            } else {
                ".".to_string()
            };
            out.push_str(&format!(" {cell:<4}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{apply_changes, Outcome};
    use proptest::prelude::*;

    const ID: u64 = ARENA_IDS.start + 7;

    fn env(id: &str, player: &str, t: ActionType, at: u64) -> ActionEnvelope {
        ActionEnvelope {
            name: (t == ActionType::Join).then(|| format!("{player}-name")),
            ..ActionEnvelope::new(id, ID, player, t, at)
        }
    }

    fn act(game: &mut Game, player: &str, t: ActionType, at: u64) -> Outcome {
        apply_changes(game, &env(&format!("{player}{at}"), player, t, at)).outcome
    }

    fn arena(game: &Game) -> &ArenaState {
        game.state.arena.as_ref().expect("an arena")
    }

    /// Two players, a in A (seat 1, (0,9)) and b in B (seat 1, (0,0)).
    fn duel() -> Game {
        let mut game = Game::new(ID);
        assert_eq!(
            act(&mut game, "a", ActionType::Join, 1_000),
            Outcome::Applied
        );
        assert_eq!(
            act(&mut game, "b", ActionType::Join, 1_000),
            Outcome::Applied
        );
        game
    }

    fn rejected(r: Rejection) -> Outcome {
        Outcome::Rejected(r)
    }

    fn place(game: &mut Game, player: &str, cell: (u8, u8)) {
        let f = game
            .state
            .arena
            .as_mut()
            .and_then(|a| a.fighters.get_mut(player))
            .expect("player");
        (f.x, f.y) = cell;
    }

    #[test]
    fn the_kind_comes_from_the_id() {
        assert_eq!(GameKind::of(1), GameKind::Nation);
        assert_eq!(GameKind::of(ARENA_IDS.start), GameKind::Arena);
        assert_eq!(GameKind::of(ARENA_IDS.end), GameKind::Nation);
    }

    #[test]
    fn the_board_is_the_seeds() {
        let mut game = Game::new(ID);
        for (i, p) in ["a1", "b1", "a2", "b2", "a3", "b3", "a4", "b4", "a5", "b5"]
            .iter()
            .enumerate()
        {
            act(&mut game, p, ActionType::Join, 1_000 + i as u64);
        }
        let text = render(arena(&game));
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            ["9", "A1-5", ".", "A3-5", ".", "A4-5", ".", "A5-5", "."]
        );
        assert_eq!(
            rows[2],
            ["7", ".", ".", "XXXX", "XXXX", ".", "A2-5", "XXXX", "XXXX"]
        );
        assert_eq!(
            rows[9],
            ["0", "B1-5", ".", ".", ".", "B3-5", ".", ".", "B5-5"]
        );
    }

    #[test]
    fn joins_fill_the_smaller_team_and_start_the_match() {
        let mut game = Game::new(ID);
        act(&mut game, "a", ActionType::Join, 1_000);
        assert_eq!(arena(&game).arena_match.phase, Phase::Lobby);
        act(&mut game, "b", ActionType::Join, 2_000);
        let a = arena(&game);
        assert_eq!(a.fighters["a"].team, Some(Team::A));
        assert_eq!(a.fighters["b"].team, Some(Team::B));
        assert_eq!(a.arena_match.phase, Phase::Playing);
        assert_eq!(a.arena_match.started_ms, 2_000);
    }

    #[test]
    fn rejects_an_eleventh_player_team_full() {
        let mut game = Game::new(ID);
        for i in 0..10 {
            assert_eq!(
                act(&mut game, &format!("p{i}"), ActionType::Join, 1_000),
                Outcome::Applied
            );
        }
        assert_eq!(arena(&game).team_size(Team::A), 5);
        assert_eq!(arena(&game).team_size(Team::B), 5);
        assert_eq!(
            act(&mut game, "late", ActionType::Join, 1_000),
            rejected(Rejection::TeamFull)
        );
    }

    #[test]
    fn rejects_a_second_join() {
        let mut game = duel();
        assert_eq!(
            act(&mut game, "a", ActionType::Join, 5_000),
            rejected(Rejection::AlreadyJoined)
        );
    }

    #[test]
    fn rejects_an_unknown_player() {
        let mut game = duel();
        assert_eq!(
            act(&mut game, "z", ActionType::MoveUp, 5_000),
            rejected(Rejection::UnknownPlayer)
        );
    }

    #[test]
    fn rejects_nation_actions_wrong_game() {
        let mut game = duel();
        assert_eq!(
            act(&mut game, "a", ActionType::PurchaseSword, 5_000),
            rejected(Rejection::WrongGame)
        );
    }

    #[test]
    fn rejects_moves_in_the_lobby_not_started() {
        let mut game = Game::new(ID);
        act(&mut game, "a", ActionType::Join, 1_000);
        assert_eq!(
            act(&mut game, "a", ActionType::MoveRight, 5_000),
            rejected(Rejection::NotStarted)
        );
    }

    #[test]
    fn moves_one_cell() {
        let mut game = duel();
        assert_eq!(
            act(&mut game, "a", ActionType::MoveRight, 5_000),
            Outcome::Applied
        );
        assert_eq!(arena(&game).fighters["a"].cell(), (1, 9));
        assert_eq!(
            act(&mut game, "a", ActionType::MoveDown, 5_200),
            Outcome::Applied
        );
        assert_eq!(arena(&game).fighters["a"].cell(), (1, 8));
    }

    #[test]
    fn rejects_moves_into_edges_walls_and_players_blocked() {
        let mut game = duel();
        // (0, 9): the top edge above, the left edge to the left.
        assert_eq!(
            act(&mut game, "a", ActionType::MoveUp, 5_000),
            rejected(Rejection::Blocked)
        );
        assert_eq!(
            act(&mut game, "a", ActionType::MoveLeft, 5_000),
            rejected(Rejection::Blocked)
        );
        place(&mut game, "a", (0, 6));
        assert_eq!(
            act(&mut game, "a", ActionType::MoveDown, 5_000),
            rejected(Rejection::Blocked),
            "(0, 5) is a wall"
        );
        place(&mut game, "b", (1, 6));
        assert_eq!(
            act(&mut game, "a", ActionType::MoveRight, 5_000),
            rejected(Rejection::Blocked),
            "b stands there"
        );
        assert_eq!(arena(&game).fighters["a"].cell(), (0, 6));
    }

    #[test]
    fn rejects_actions_too_fast() {
        let mut game = duel();
        act(&mut game, "a", ActionType::MoveRight, 5_000);
        assert_eq!(
            act(&mut game, "a", ActionType::MoveRight, 5_040),
            rejected(Rejection::TooFast { wait_ms: 60 })
        );
        assert_eq!(arena(&game).fighters["a"].cell(), (1, 9));
        assert_eq!(
            act(&mut game, "a", ActionType::MoveRight, 5_100),
            Outcome::Applied
        );
    }

    #[test]
    fn a_flood_moves_at_most_once_per_interval() {
        let mut game = duel();
        place(&mut game, "a", (4, 8));
        let mut applied = 0;
        for i in 0..100u64 {
            let t = if i % 2 == 0 {
                ActionType::MoveLeft
            } else {
                ActionType::MoveRight
            };
            if act(&mut game, "a", t, 10_000 + i * 10) == Outcome::Applied {
                applied += 1;
            }
        }
        assert_eq!(applied, 10, "1,000 ms of stamps allow ten actions");
    }

    #[test]
    fn a_throw_bursts_on_the_first_player_and_hurts_opponents_only() {
        let mut game = duel();
        act(&mut game, "c", ActionType::Join, 1_000); // A, seat 2 at (5, 7)
        place(&mut game, "a", (4, 8));
        place(&mut game, "b", (4, 5));
        place(&mut game, "c", (5, 4)); // A's, next to the burst
        assert_eq!(
            act(&mut game, "a", ActionType::ThrowDown, 5_000),
            Outcome::Applied
        );
        let s = arena(&game);
        assert_eq!(s.fighters["b"].hp, MAX_HP - BURST_DAMAGE);
        assert_eq!(s.fighters["c"].hp, MAX_HP, "no friendly fire");
        assert_eq!(s.fighters["a"].grenades, GRENADES - 1);
        let burst = s.arena_match.burst.expect("a burst");
        assert_eq!((burst.x, burst.y, burst.team), (4, 5, Team::A));
    }

    #[test]
    fn a_grenade_stops_before_a_wall_or_at_its_range() {
        let mut game = duel();
        place(&mut game, "a", (4, 9));
        assert_eq!(flight(arena(&game), (4, 9), Dir::Down), Some((4, 5)));
        assert_eq!(
            flight(arena(&game), (3, 5), Dir::Up),
            Some((3, 6)),
            "wall at (3, 7)"
        );
    }

    #[test]
    fn rejects_a_throw_into_an_adjacent_wall_blocked() {
        let mut game = duel();
        place(&mut game, "a", (3, 6));
        assert_eq!(
            act(&mut game, "a", ActionType::ThrowUp, 5_000),
            rejected(Rejection::Blocked)
        );
        assert_eq!(arena(&game).fighters["a"].grenades, GRENADES);
    }

    #[test]
    fn rejects_a_throw_without_grenades() {
        let mut game = duel();
        game.state
            .arena
            .as_mut()
            .unwrap()
            .fighters
            .get_mut("a")
            .unwrap()
            .grenades = 0;
        assert_eq!(
            act(&mut game, "a", ActionType::ThrowRight, 5_000),
            rejected(Rejection::NoGrenades)
        );
    }

    #[test]
    fn eliminating_the_last_opponent_wins_and_then_nothing_moves() {
        let mut game = duel();
        act(&mut game, "c", ActionType::Join, 1_000); // A
        act(&mut game, "d", ActionType::Join, 1_000); // B
        place(&mut game, "a", (4, 9));
        place(&mut game, "b", (4, 6));
        place(&mut game, "d", (0, 0));
        for (i, at) in [5_000u64, 5_100, 5_200].into_iter().enumerate() {
            assert_eq!(
                act(&mut game, "a", ActionType::ThrowDown, at),
                Outcome::Applied,
                "{i}"
            );
        }
        assert_eq!(arena(&game).fighters["b"].hp, 0);
        assert_eq!(arena(&game).fighters["a"].kills, 1);
        assert_eq!(
            act(&mut game, "b", ActionType::MoveLeft, 6_000),
            rejected(Rejection::Eliminated)
        );
        assert_eq!(arena(&game).arena_match.phase, Phase::Playing, "d stands");
        place(&mut game, "c", (0, 3));
        for at in [7_000u64, 7_100, 7_200] {
            assert_eq!(
                act(&mut game, "c", ActionType::ThrowDown, at),
                Outcome::Applied
            );
        }
        let m = &arena(&game).arena_match;
        assert_eq!(
            (m.phase, m.winner, m.end),
            (Phase::Over, Some(Team::A), Some(EndReason::Eliminated))
        );
        assert_eq!(m.wins_a, 1);
        assert_eq!(
            act(&mut game, "a", ActionType::MoveRight, 9_000),
            rejected(Rejection::MatchOver)
        );
    }

    #[test]
    fn time_up_ends_the_round_with_the_first_late_action() {
        let mut game = duel();
        let late = 1_000 + MATCH_MS;
        let before = game.version;
        let step = apply_changes(&mut game, &env("late", "a", ActionType::MoveRight, late));
        assert_eq!(step.outcome, rejected(Rejection::MatchOver));
        assert!(step.match_changed);
        assert_eq!(game.version, before + 1);
        let m = &arena(&game).arena_match;
        assert_eq!(
            (m.phase, m.end, m.winner),
            (Phase::Over, Some(EndReason::Time), None)
        );
    }

    #[test]
    fn out_of_grenades_ends_the_round() {
        let mut game = duel();
        for p in ["a", "b"] {
            game.state
                .arena
                .as_mut()
                .unwrap()
                .fighters
                .get_mut(p)
                .unwrap()
                .grenades = 0;
        }
        game.state
            .arena
            .as_mut()
            .unwrap()
            .fighters
            .get_mut("a")
            .unwrap()
            .grenades = 1;
        place(&mut game, "a", (4, 9));
        assert_eq!(
            act(&mut game, "a", ActionType::ThrowDown, 5_000),
            Outcome::Applied
        );
        let m = &arena(&game).arena_match;
        assert_eq!(
            (m.phase, m.end),
            (Phase::Over, Some(EndReason::OutOfGrenades))
        );
    }

    #[test]
    fn rematch_after_the_end_only_and_everyone_respawns() {
        let mut game = duel();
        assert_eq!(
            act(&mut game, "a", ActionType::Rematch, 5_000),
            rejected(Rejection::MatchNotOver)
        );
        place(&mut game, "a", (3, 3));
        act(&mut game, "b", ActionType::Rematch, 1_000 + MATCH_MS); // ends it
        assert_eq!(
            act(&mut game, "b", ActionType::Rematch, 2_000 + MATCH_MS),
            Outcome::Applied
        );
        let s = arena(&game);
        assert_eq!(s.arena_match.round, 2);
        assert_eq!(s.arena_match.phase, Phase::Playing);
        assert_eq!(s.fighters["a"].cell(), (0, 9));
        assert_eq!(s.fighters["a"].grenades, GRENADES);
    }

    #[test]
    fn rejection_codes_are_the_issues() {
        for (r, code) in [
            (Rejection::Blocked, "blocked"),
            (Rejection::NoGrenades, "no_grenades"),
            (Rejection::Eliminated, "eliminated"),
            (Rejection::TooFast { wait_ms: 1 }, "too_fast"),
            (Rejection::MatchOver, "match_over"),
            (Rejection::TeamFull, "team_full"),
            (Rejection::NotStarted, "not_started"),
            (Rejection::MatchNotOver, "match_not_over"),
            (Rejection::WrongGame, "wrong_game"),
        ] {
            assert_eq!(serde_json::to_value(&r).unwrap()["code"], code);
            assert_eq!(r.code(), code);
        }
    }

    fn arb_action() -> impl Strategy<Value = ActionEnvelope> {
        (0usize..12, 0usize..ActionType::ARENA.len(), 0u64..400)
            .prop_map(|(player, t, dt)| (format!("p{player}"), ActionType::ARENA[t], dt))
            .prop_map(|(player, t, dt)| env("x", &player, t, dt))
    }

    fn run(actions: &[ActionEnvelope]) -> Vec<ActionEnvelope> {
        // Stamps grow (the bridge's clock), ids are unique.
        let mut now = 1_000;
        actions
            .iter()
            .enumerate()
            .map(|(i, a)| {
                now += a.received_at_ms;
                ActionEnvelope {
                    event_id: format!("e{i}"),
                    received_at_ms: now,
                    ..a.clone()
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn nobody_in_a_wall_or_on_another_and_grenades_in_bounds(actions in prop::collection::vec(arb_action(), 0..300)) {
            let mut game = Game::new(ID);
            for a in run(&actions) {
                apply_changes(&mut game, &a);
                let Some(s) = game.state.arena.as_ref() else { continue };
                prop_assert!(s.fighters.len() <= 2 * TEAM_SIZE);
                let mut cells = std::collections::BTreeSet::new();
                for f in s.fighters.values() {
                    prop_assert!(f.grenades <= GRENADES && f.hp <= MAX_HP);
                    if f.standing() {
                        prop_assert!(!is_wall(f.cell()) && f.x < WIDTH && f.y < HEIGHT);
                        prop_assert!(cells.insert(f.cell()), "two players on {:?}", f.cell());
                    }
                }
            }
        }

        #[test]
        fn a_finished_round_accepts_no_move_or_throw(actions in prop::collection::vec(arb_action(), 0..300)) {
            let mut game = Game::new(ID);
            for a in run(&actions) {
                let over = game.state.arena.as_ref().is_some_and(|s| s.arena_match.phase == Phase::Over);
                let before = game.clone();
                let step = apply_changes(&mut game, &a);
                if over && a.event_type != ActionType::Rematch && a.event_type != ActionType::Join {
                    prop_assert!(matches!(step.outcome, Outcome::Rejected(_)));
                    prop_assert_eq!(&game.state, &before.state);
                }
            }
        }

        #[test]
        fn only_the_reported_changes_happen(actions in prop::collection::vec(arb_action(), 0..200)) {
            // What makes an update of the changed records a correct delta.
            let mut game = Game::new(ID);
            for a in run(&actions) {
                let before = game.state.arena.clone().unwrap_or_default();
                let step = apply_changes(&mut game, &a);
                let after = game.state.arena.clone().unwrap_or_default();
                for (id, f) in &after.fighters {
                    if !step.fighters.contains(id) {
                        prop_assert_eq!(Some(f), before.fighters.get(id));
                    }
                }
                if !step.match_changed {
                    prop_assert_eq!(&after.arena_match, &before.arena_match);
                }
            }
        }

        #[test]
        fn the_same_actions_give_the_same_state(actions in prop::collection::vec(arb_action(), 0..200)) {
            let actions = run(&actions);
            let mut live = Game::new(ID);
            for a in &actions {
                apply_changes(&mut live, a);
            }
            let mut replay = Game::new(ID);
            let half = actions.len() / 2;
            for a in &actions[..half] {
                apply_changes(&mut replay, a);
            }
            let json = serde_json::to_string(&replay).unwrap();
            let mut replay: Game = serde_json::from_str(&json).unwrap();
            for a in &actions[half..] {
                apply_changes(&mut replay, a);
            }
            prop_assert_eq!(live, replay);
        }

        #[test]
        fn check_agrees_with_apply(actions in prop::collection::vec(arb_action(), 0..200)) {
            let mut game = Game::new(ID);
            for a in run(&actions) {
                let s = game.state.arena.clone().unwrap_or_default();
                let timed_out = s.arena_match.phase == Phase::Playing
                    && a.received_at_ms >= s.arena_match.started_ms + MATCH_MS;
                let predicted = check(&s, &a.player_id, a.event_type, Some(a.received_at_ms));
                let out = apply_changes(&mut game, &a).outcome;
                if !timed_out {
                    match out {
                        Outcome::Applied => prop_assert!(predicted.is_ok()),
                        Outcome::Rejected(r) => prop_assert_eq!(predicted, Err(r)),
                    }
                }
            }
        }
    }
}
