//! [`Ranking`]: the entries of one board in rank order, with rank lookups.
//!
//! A sorted list cut into blocks of at most [`MAX_BLOCK`] keys (the layout
//! of Python's `sortedcontainers`): an insert or a removal moves at most one
//! block's keys, a key's rank is the lengths of the blocks before it plus its
//! place in its block, and a page is a slice walk. With 1,000,000 entries
//! that is about a thousand blocks: top-100 and around-player queries are
//! microseconds (`cargo bench -p leaderboards`).

use std::cmp::Ordering;
use std::sync::Arc;

/// Keys per block before it is split in two.
pub const MAX_BLOCK: usize = 1024;

/// Where an entry sorts: by `sort` (the score, negated for a descending
/// board, so smaller is always better), then by who reached it first, then
/// by player id. Total, so ties are deterministic.
#[derive(Clone, Debug)]
pub struct RankKey {
    pub sort: f64,
    pub reached_at_ms: i64,
    pub player: Arc<str>,
}

impl PartialEq for RankKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for RankKey {}
impl PartialOrd for RankKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for RankKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort
            .total_cmp(&other.sort)
            .then(self.reached_at_ms.cmp(&other.reached_at_ms))
            .then_with(|| self.player.cmp(&other.player))
    }
}

/// Keys in rank order (index 0 is first place).
#[derive(Clone, Debug, Default)]
pub struct Ranking {
    blocks: Vec<Vec<RankKey>>,
    len: usize,
}

impl Ranking {
    pub fn new() -> Ranking {
        Ranking::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The block that holds (or would hold) `key`, and the place in it.
    fn locate(&self, key: &RankKey) -> (usize, Result<usize, usize>) {
        let block = self
            .blocks
            .partition_point(|b| b.last().is_some_and(|last| last < key));
        let block = block.min(self.blocks.len().saturating_sub(1));
        match self.blocks.get(block) {
            Some(b) => (block, b.binary_search(key)),
            None => (0, Err(0)),
        }
    }

    /// Adds `key`; false if it was there already.
    pub fn insert(&mut self, key: RankKey) -> bool {
        if self.blocks.is_empty() {
            self.blocks.push(vec![key]);
            self.len = 1;
            return true;
        }
        let (block, place) = self.locate(&key);
        let Err(at) = place else {
            return false;
        };
        let b = &mut self.blocks[block];
        b.insert(at, key);
        self.len += 1;
        if b.len() > MAX_BLOCK {
            let tail = b.split_off(b.len() / 2);
            self.blocks.insert(block + 1, tail);
        }
        true
    }

    /// Removes `key`; false if it was not there.
    pub fn remove(&mut self, key: &RankKey) -> bool {
        let (block, place) = self.locate(key);
        let Ok(at) = place else {
            return false;
        };
        let b = &mut self.blocks[block];
        b.remove(at);
        if b.is_empty() {
            self.blocks.remove(block);
        }
        self.len -= 1;
        true
    }

    /// `key`'s index (0 = first place), if present.
    pub fn rank(&self, key: &RankKey) -> Option<usize> {
        let (block, place) = self.locate(key);
        let at = place.ok()?;
        Some(self.blocks[..block].iter().map(Vec::len).sum::<usize>() + at)
    }

    /// The index of the first key strictly after `key` (present or not).
    pub fn index_after(&self, key: &RankKey) -> usize {
        let (block, place) = self.locate(key);
        let before: usize = self.blocks[..block].iter().map(Vec::len).sum();
        match place {
            Ok(at) => before + at + 1,
            Err(at) => before + at,
        }
    }

    /// Up to `limit` keys from index `from`, in rank order.
    pub fn range(&self, from: usize, limit: usize) -> Vec<&RankKey> {
        let mut skip = from;
        let mut out = Vec::with_capacity(limit.min(self.len));
        for b in &self.blocks {
            if out.len() >= limit {
                break;
            }
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            out.extend(b[skip..].iter().take(limit - out.len()));
            skip = 0;
        }
        out
    }

    /// Every key, in rank order.
    pub fn iter(&self) -> impl Iterator<Item = &RankKey> {
        self.blocks.iter().flatten()
    }

    pub fn clear(&mut self) {
        self.blocks.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(sort: f64, at: i64, player: &str) -> RankKey {
        RankKey {
            sort,
            reached_at_ms: at,
            player: player.into(),
        }
    }

    #[test]
    fn ties_go_to_who_reached_the_score_first_then_to_the_player_id() {
        let mut r = Ranking::new();
        r.insert(key(-5.0, 20, "a"));
        r.insert(key(-5.0, 10, "b"));
        r.insert(key(-5.0, 10, "a"));
        r.insert(key(-7.0, 30, "z"));
        let order: Vec<&str> = r.iter().map(|k| &*k.player).collect();
        assert_eq!(order, ["z", "a", "b", "a"]);
        assert_eq!(r.rank(&key(-5.0, 10, "b")), Some(2));
        assert!(!r.insert(key(-7.0, 30, "z")), "no duplicates");
    }

    proptest! {
        #[test]
        fn agrees_with_a_sorted_vec(ops in proptest::collection::vec((0u8..3, 0i64..50, 0u8..40), 1..3000)) {
            let mut r = Ranking::new();
            let mut model: Vec<RankKey> = Vec::new();
            for (op, score, p) in ops {
                let k = key(score as f64, i64::from(p) % 3, &format!("p{p}"));
                if op == 0 {
                    let pos = model.binary_search(&k);
                    r.remove(&k);
                    if let Ok(pos) = pos { model.remove(pos); }
                } else {
                    let pos = model.binary_search(&k);
                    prop_assert_eq!(r.insert(k.clone()), pos.is_err());
                    if let Err(pos) = pos { model.insert(pos, k); }
                }
            }
            prop_assert_eq!(r.len(), model.len());
            prop_assert!(r.iter().eq(model.iter()));
            for (i, k) in model.iter().enumerate() {
                prop_assert_eq!(r.rank(k), Some(i));
                prop_assert_eq!(r.index_after(k), i + 1);
            }
            let page: Vec<RankKey> = r.range(3, 7).into_iter().cloned().collect();
            prop_assert_eq!(&page[..], &model[3.min(model.len())..(10).min(model.len())]);
        }
    }
}
