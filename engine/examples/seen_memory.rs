//! Engine memory per remembered action id (BENCHMARKS.md, issue 11):
//! `cargo run --release -p engine --example seen_memory [ids]`.
//! Fills a game's [`engine::seen::Seen`] with `ids` UUIDv7 ids over 1,000
//! players, and, as the baseline in the same run, a plain
//! `std::collections::HashSet<(String, String)>` with the same ids; prints
//! the resident memory each added per id.

use std::collections::HashSet;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn ids(n: u64) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let player = format!("{:032x}", i % 1_000);
            let id = uuid::Uuid::now_v7().to_string();
            (player, id)
        })
        .collect()
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let input = ids(n);
    let before = resident_bytes();
    let mut seen = engine::seen::Seen::default();
    for (i, (player, id)) in input.iter().enumerate() {
        seen.remember(player, id, i as u64);
    }
    let after = resident_bytes();
    let per_seen = (after - before) as f64 / n as f64;
    let copy = seen.clone();
    let after_copy = resident_bytes();
    drop(copy);
    let before_set = resident_bytes();
    let set: HashSet<(String, String)> = input.iter().cloned().collect();
    let after_set = resident_bytes();
    let per_set = (after_set - before_set) as f64 / n as f64;
    println!(
        "{n} ids: Seen {per_seen:.0} bytes/id (a copy of it: {} bytes); baseline HashSet<(String, String)> {per_set:.0} bytes/id; ratio {:.2}",
        after_copy - after,
        per_seen / per_set
    );
    assert_eq!(seen.len() as u64, n);
    assert_eq!(set.len() as u64, n);
}
