//! The bridge's player-token verifier (`TokenKeys::verify_at`): whatever a
//! client puts after `Authorization: Bearer`.
//!
//! Oracle: never a panic; a token accepted names the game asked for and is
//! exactly what the keys would sign for that player and expiry (or a v1
//! token of the previous key), so nothing else is ever accepted.

#![no_main]

use std::sync::OnceLock;

use bridge::auth::TokenKeys;
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_800_000_000;

fn keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| TokenKeys::with_previous(b"current".to_vec(), [b"previous".to_vec()]))
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let keys = keys();
    if let Ok(player) = keys.verify_at(token, 7, NOW) {
        assert!(!player.is_empty() && !player.contains('.'));
        let fields: Vec<&str> = token.split('.').collect();
        match fields[0] {
            "v2" => {
                assert_eq!(fields[2], "7");
                assert_eq!(fields[3], player);
                let expires: u64 = fields[4].parse().expect("a signed expiry");
                assert!(expires > NOW);
                // Signed now with the current key: the same token exactly.
                if fields[1] == keys.current_key_id() {
                    let ttl = expires - NOW;
                    let again = keys.clone().ttl_s(ttl).sign_at(7, &player, NOW);
                    assert_eq!(again, token);
                }
            }
            "v1" => assert_eq!(fields[1], "7"),
            other => panic!("accepted a token of version {other:?}"),
        }
    }
});
