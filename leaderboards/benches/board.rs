//! A board of 1,000,000 players: top-100 and around-player query latencies
//! (p50/p99/max over 20,000 queries each), update cost, and memory per
//! entry (resident set growth). `cargo bench -p leaderboards --bench board`.

use std::time::{Duration, Instant};

use leaderboards::board::{Board, Operator, Order, Rules, ScoreEvent};
use rand::{Rng, SeedableRng};

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn percentiles(mut d: Vec<Duration>) -> String {
    d.sort();
    let at = |q: f64| d[((d.len() as f64 * q) as usize).min(d.len() - 1)];
    format!(
        "p50 {:>7.1} µs  p99 {:>7.1} µs  max {:>7.1} µs",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        d[d.len() - 1].as_secs_f64() * 1e6
    )
}

fn main() {
    let players: usize = std::env::var("PLAYERS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let rules = Rules {
        operator: Operator::Best,
        order: Order::Desc,
        start_ms: None,
        end_ms: None,
        reset: None,
        window_ms: None,
        grace_ms: leaderboards::board::default_grace_ms(),
    };
    let before = rss_bytes();
    let mut board = Board::new(rules).expect("board");
    let t0 = 1_764_578_400_000i64;
    let start = Instant::now();
    for i in 0..players {
        board.apply(&ScoreEvent {
            id: format!("e{i}"),
            player: format!("player-{i:07}"),
            value: f64::from(rng.random_range(0..100_000u32)),
            time_ms: t0 + i as i64,
        });
    }
    let built = start.elapsed();
    let after = rss_bytes();
    println!(
        "board of {players} players built in {:.2} s ({:.2} µs per insert); resident growth {:.0} bytes per entry (board entry, rank key and the ids kept within the 10 s grace)",
        built.as_secs_f64(),
        built.as_secs_f64() * 1e6 / players as f64,
        (after.saturating_sub(before)) as f64 / players as f64
    );
    let queries = 20_000;
    let mut top = Vec::with_capacity(queries);
    for _ in 0..queries {
        let s = Instant::now();
        let (rows, _) = board.page(100, None);
        std::hint::black_box(&rows);
        top.push(s.elapsed());
    }
    println!("top-100             {}", percentiles(top));
    let mut around = Vec::with_capacity(queries);
    for _ in 0..queries {
        let p = format!("player-{:07}", rng.random_range(0..players));
        let s = Instant::now();
        let rows = board.around(&p, 10).expect("on the board");
        std::hint::black_box(&rows);
        around.push(s.elapsed());
    }
    println!("around (radius 10)  {}", percentiles(around));
    let mut updates = Vec::with_capacity(queries);
    for i in 0..queries {
        let ev = ScoreEvent {
            id: format!("u{i}"),
            player: format!("player-{:07}", rng.random_range(0..players)),
            value: f64::from(rng.random_range(50_000..200_000u32)),
            time_ms: t0 + players as i64 + i as i64,
        };
        let s = Instant::now();
        board.apply(&ev);
        updates.push(s.elapsed());
    }
    println!("update (best)       {}", percentiles(updates));
}
