//! The live feed: what happened in this game, in words, newest first.
//!
//! Lines are derived by *diffing* the confirmed game before and after an
//! update (a new nation joined, an item's level went up) plus the update's
//! `rejected` list, so they do not depend on how the server shapes its
//! updates (whole state or only the nations that changed): whatever the
//! session makes of an update, the two confirmed games tell what happened.

use std::collections::VecDeque;

use shared::{ActionType, Game, Item, RejectedAction, Rejection};

/// How many lines the feed keeps.
pub const FEED_CAP: usize = 12;

/// One line of the feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedLine {
    /// Unique within the page, for the view's keys.
    pub seq: u64,
    pub text: String,
    /// About the player's own nation.
    pub mine: bool,
    /// A refused action.
    pub refused: bool,
}

/// What happened between two confirmed games, oldest first (without `seq`).
///
/// `old` is `None` for the first state the page sees: then nothing is
/// reported (the feed tells news, not the game's history). `own` names the
/// player's own refused actions (by action id) so their lines can say what
/// was refused; `me` is the player's id.
pub fn changes(
    old: Option<&Game>,
    new: &Game,
    rejected: &[RejectedAction],
    own: &[(String, ActionType)],
    me: Option<&str>,
) -> Vec<(String, bool, bool)> {
    let Some(old) = old else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for (id, nation) in &new.state.players {
        let mine = Some(id.as_str()) == me;
        let who = if mine {
            format!("You ({})", nation.name)
        } else {
            nation.name.clone()
        };
        let before = old.state.players.get(id);
        if before.is_none() {
            lines.push((format!("{who} joined the game"), mine, false));
        }
        for item in Item::ALL {
            let from = before.map_or(0, |b| b.items.level(item));
            let to = nation.items.level(item);
            for level in from.saturating_add(1)..=to {
                let text = if level == 1 {
                    format!("{who} bought a {item}")
                } else {
                    format!("{who} upgraded the {item} to level {level}")
                };
                lines.push((text, mine, false));
            }
        }
    }
    for r in rejected {
        let mine = Some(r.player_id.as_str()) == me;
        let name = new
            .state
            .players
            .get(&r.player_id)
            .or_else(|| old.state.players.get(&r.player_id))
            .map_or_else(|| "A newcomer".to_string(), |n| n.name.clone());
        // The update names the action (engines since issue 19); older
        // records leave it out, and then only the page that sent it knows.
        let what = r
            .action
            .or_else(|| {
                own.iter()
                    .find(|(id, _)| *id == r.event_id)
                    .map(|(_, a)| *a)
            })
            .map_or_else(|| "action".to_string(), what_was_refused);
        let line = if mine {
            format!("Your ({name}) {what} refused: {}", r.reason)
        } else {
            format!("{name}'s {what} refused: {}", rival_reason(&r.reason))
        };
        lines.push((line, mine, true));
    }
    lines
}

/// A rival's refusal in the third person: the reasons' own words speak to
/// the player who sent the action ("you have 3").
fn rival_reason(reason: &Rejection) -> String {
    match reason {
        Rejection::NotEnoughGold { need, have } => {
            format!("not enough gold: it costs {need}, they have {have}")
        }
        Rejection::ItemMissing { item } => format!("they need a {item} first"),
        Rejection::MaxLevel { item, max } => {
            format!("their {item} is already at the maximum level ({max})")
        }
        Rejection::AlreadyOwned { item } => format!("they already own a {item}"),
        Rejection::AlreadyJoined => "already in this game".to_string(),
        other => other.to_string(),
    }
}

/// "sword purchase", "shield upgrade", "visit".
fn what_was_refused(action: ActionType) -> String {
    if let Some(item) = action.purchase() {
        format!("{item} purchase")
    } else if let Some(item) = action.upgrade() {
        format!("{item} upgrade")
    } else if action == ActionType::Join {
        "join".to_string()
    } else {
        "visit".to_string()
    }
}

/// The feed: newest first, at most [`FEED_CAP`] lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Feed {
    lines: VecDeque<FeedLine>,
    next: u64,
}

impl Feed {
    /// Adds lines given oldest first; the newest ends on top.
    pub fn push(&mut self, lines: Vec<(String, bool, bool)>) {
        for (text, mine, refused) in lines {
            self.next += 1;
            self.lines.push_front(FeedLine {
                seq: self.next,
                text,
                mine,
                refused,
            });
        }
        self.lines.truncate(FEED_CAP);
    }

    /// The lines, newest first.
    pub fn lines(&self) -> Vec<FeedLine> {
        self.lines.iter().cloned().collect()
    }

    /// Forgets everything (another game was opened).
    pub fn clear(&mut self) {
        self.lines.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Nation;

    fn game(nations: &[(&str, &str, [u8; 4])]) -> Game {
        let mut g = Game::new(1);
        for (id, name, [sword, shield, horse, knife]) in nations {
            let mut n = Nation {
                name: name.to_string(),
                ..Nation::default()
            };
            n.items.sword = *sword;
            n.items.shield = *shield;
            n.items.horse = *horse;
            n.items.knife = *knife;
            g.state.players.insert(id.to_string(), n);
        }
        g
    }

    fn texts(lines: &[(String, bool, bool)]) -> Vec<&str> {
        lines.iter().map(|l| l.0.as_str()).collect()
    }

    #[test]
    fn the_first_state_tells_nothing() {
        let g = game(&[("a", "Ana", [1, 0, 0, 0])]);
        assert!(changes(None, &g, &[], &[], None).is_empty());
    }

    #[test]
    fn a_new_nation_joined() {
        let old = game(&[]);
        let new = game(&[("a", "Ana", [0; 4])]);
        let lines = changes(Some(&old), &new, &[], &[], Some("b"));
        assert_eq!(lines, vec![("Ana joined the game".into(), false, false)]);
    }

    #[test]
    fn a_purchase_and_an_upgrade() {
        let old = game(&[("a", "Ana", [0; 4]), ("b", "Bo", [2, 0, 0, 0])]);
        let new = game(&[("a", "Ana", [0, 0, 1, 0]), ("b", "Bo", [3, 0, 0, 0])]);
        let lines = changes(Some(&old), &new, &[], &[], None);
        assert_eq!(
            texts(&lines),
            vec!["Ana bought a horse", "Bo upgraded the sword to level 3"]
        );
    }

    #[test]
    fn a_skipped_update_still_tells_every_level() {
        let old = game(&[("a", "Ana", [0; 4])]);
        let new = game(&[("a", "Ana", [0, 2, 0, 0])]);
        assert_eq!(
            texts(&changes(Some(&old), &new, &[], &[], None)),
            vec!["Ana bought a shield", "Ana upgraded the shield to level 2"]
        );
    }

    #[test]
    fn own_lines_are_marked() {
        let old = game(&[("me", "Rome", [0; 4])]);
        let new = game(&[("me", "Rome", [0, 0, 0, 1])]);
        let lines = changes(Some(&old), &new, &[], &[], Some("me"));
        assert_eq!(
            lines,
            vec![("You (Rome) bought a knife".into(), true, false)]
        );
    }

    #[test]
    fn nothing_changed_nothing_told() {
        let g = game(&[("a", "Ana", [1, 1, 1, 1])]);
        let mut later = g.clone();
        later.version += 1;
        later.state.players.get_mut("a").unwrap().gold += 5;
        assert!(changes(Some(&g), &later, &[], &[], None).is_empty());
    }

    #[test]
    fn refusals_say_who_and_why() {
        let g = game(&[("c", "Cy", [0; 4]), ("me", "Rome", [0; 4])]);
        let rejected = vec![
            RejectedAction {
                event_id: "x".into(),
                player_id: "c".into(),
                reason: Rejection::NotEnoughGold { need: 40, have: 3 },
                action: Some(ActionType::PurchaseShield),
            },
            RejectedAction {
                event_id: "mine".into(),
                player_id: "me".into(),
                reason: Rejection::NotEnoughGold { need: 50, have: 20 },
                action: None,
            },
        ];
        let own = vec![("mine".to_string(), ActionType::PurchaseSword)];
        let lines = changes(Some(&g), &g, &rejected, &own, Some("me"));
        assert_eq!(
            lines,
            vec![
                (
                    "Cy's shield purchase refused: not enough gold: it costs 40, they have 3"
                        .into(),
                    false,
                    true
                ),
                (
                    "Your (Rome) sword purchase refused: not enough gold: it costs 50, you have 20"
                        .into(),
                    true,
                    true
                ),
            ]
        );
    }

    #[test]
    fn a_rivals_refusal_from_an_older_engine_still_reads() {
        let g = game(&[("c", "Cy", [1, 0, 0, 0])]);
        let rejected = vec![RejectedAction {
            event_id: "x".into(),
            player_id: "c".into(),
            reason: Rejection::AlreadyOwned { item: Item::Sword },
            action: None,
        }];
        assert_eq!(
            texts(&changes(Some(&g), &g, &rejected, &[], Some("me"))),
            vec!["Cy's action refused: they already own a sword"]
        );
    }

    #[test]
    fn the_feed_is_newest_first_and_capped() {
        let mut feed = Feed::default();
        feed.push(
            (0..FEED_CAP + 5)
                .map(|i| (format!("line {i}"), false, false))
                .collect(),
        );
        let lines = feed.lines();
        assert_eq!(lines.len(), FEED_CAP);
        assert_eq!(lines[0].text, format!("line {}", FEED_CAP + 4));
        assert!(lines.windows(2).all(|w| w[0].seq > w[1].seq));
    }
}
