//! The pure rules' speed: `apply` on a busy game, and the JSON round trip the
//! engine pays per record (the baseline `apply` is compared against).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shared::{apply, ActionEnvelope, ActionType, Game, SCHEMA_VERSION};

fn envelopes(n: usize) -> Vec<ActionEnvelope> {
    (0..n)
        .map(|i| ActionEnvelope {
            event_id: format!("0190f000-0000-7000-8000-{i:012}"),
            game_id: 1,
            player_id: format!("p{}", i % 50),
            event_type: if i < 50 {
                ActionType::Join
            } else {
                ActionType::ALL[1 + i % 7]
            },
            name: Some("bench".into()),
            host: "bench.local".into(),
            user_agent: "criterion".into(),
            accept: "*/*".into(),
            client_addr: "127.0.0.1".into(),
            received_at_ms: 1_763_800_000_000 + i as u64 * 100,
            schema_version: SCHEMA_VERSION,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let actions = envelopes(10_000);
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(actions.len() as u64));
    group.bench_function("apply", |b| {
        b.iter(|| {
            let mut game = Game::new(1);
            for a in &actions {
                std::hint::black_box(apply(&mut game, a));
            }
            game.version
        })
    });
    let encoded: Vec<Vec<u8>> = actions
        .iter()
        .map(|a| serde_json::to_vec(a).unwrap())
        .collect();
    group.bench_function("decode_envelope_baseline", |b| {
        b.iter(|| {
            encoded
                .iter()
                .map(|bytes| {
                    serde_json::from_slice::<ActionEnvelope>(bytes)
                        .unwrap()
                        .received_at_ms
                })
                .sum::<u64>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
