//! Player tokens: `v2.<kid>.<game_id>.<player_id>.<expires>.<hmac>`, signed
//! by the bridge.
//!
//! - `kid` names the secret that signed the token: the first 8 characters of
//!   a hash of the secret ([`key_id`]), so no one has to number keys by hand.
//!   Several secrets can be configured: the current one signs, the previous
//!   ones are still accepted, so a secret is rotated without logging every
//!   player out (CONTRACT.md, "Player tokens").
//! - `expires` is the Unix time (seconds) after which the token is refused.
//! - `hmac` is HMAC-SHA256 over everything before it, URL-safe base64.
//!
//! Any bridge configured with the same secrets accepts any other's tokens.
//! Tokens of the first format, `v1.<game_id>.<player_id>.<hmac>` (no key id,
//! no expiry), are still accepted while the secret that signed them is
//! configured, unless `TOKEN_ACCEPT_V1=false`; rotating the secret ends them.
//!
//! Time is an argument ([`TokenKeys::sign_at`], [`TokenKeys::verify_at`]); the
//! handlers pass the wall clock. Refusals are counted per client address in a
//! bounded [`RefusedTokens`] table; totals by reason on `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// How long a token lives unless configured (`TOKEN_TTL_S`): 30 days.
pub const DEFAULT_TOKEN_TTL_S: u64 = 30 * 24 * 3600;

/// The longest token looked at; longer is malformed before any work.
pub const MAX_TOKEN_LEN: usize = 512;

/// One secret and the id it is known by.
#[derive(Clone)]
struct Key {
    id: String,
    mac: HmacSha256,
}

/// Signs and verifies tokens: the current key signs, every configured key
/// verifies.
#[derive(Clone)]
pub struct TokenKeys {
    /// `keys[0]` is the current key; the rest are previous ones.
    keys: Arc<[Key]>,
    ttl_s: u64,
    accept_v1: bool,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("signed by a key this bridge does not know")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired at {0}")]
    Expired(u64),
    #[error("token is for game {0}")]
    OtherGame(u64),
}

impl TokenError {
    /// The short code sent as `error` and used as the metrics label.
    pub fn code(self) -> &'static str {
        match self {
            TokenError::Missing => "missing_token",
            TokenError::Malformed => "malformed_token",
            TokenError::UnknownKey => "unknown_token_key",
            TokenError::BadSignature => "bad_token_signature",
            TokenError::Expired(_) => "token_expired",
            TokenError::OtherGame(_) => "token_for_other_game",
        }
    }

    /// The `error` code of the HTTP answer: `token_expired` and
    /// `unknown_token_key` say "join again"; the rest stay `unauthorized`
    /// (and `forbidden` for another game's token), as before expiry existed.
    pub fn http_code(self) -> &'static str {
        match self {
            TokenError::Expired(_) => "token_expired",
            TokenError::UnknownKey => "unknown_token_key",
            TokenError::OtherGame(_) => "forbidden",
            _ => "unauthorized",
        }
    }

    /// What the player (or their client) should do about it.
    pub fn detail(self) -> &'static str {
        match self {
            TokenError::Missing => "send Authorization: Bearer <token> from /join",
            TokenError::Malformed => "the token is not one this bridge issued",
            TokenError::UnknownKey => {
                "the key that signed this token is no longer accepted: join again"
            }
            TokenError::BadSignature => "the token's signature does not match",
            TokenError::Expired(_) => "the token has expired: join again",
            TokenError::OtherGame(_) => "this token is for another game",
        }
    }
}

/// The id of a secret: 8 URL-safe characters of its SHA-256 (48 bits: says
/// which key to try, reveals nothing usable about the secret).
pub fn key_id(secret: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"build-a-nation token key id\0")
        .chain_update(secret)
        .finalize();
    URL_SAFE_NO_PAD.encode(&digest[..6])
}

/// Seconds since the Unix epoch, from the bridge's clock.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenKeys {
    /// Keys from one configured secret (the current one), default lifetime.
    pub fn new(secret: impl Into<Vec<u8>>) -> TokenKeys {
        TokenKeys::with_previous(secret, Vec::<Vec<u8>>::new())
    }

    /// The current secret (signs and verifies) and previous ones (verify only).
    pub fn with_previous<S: Into<Vec<u8>>>(
        current: impl Into<Vec<u8>>,
        previous: impl IntoIterator<Item = S>,
    ) -> TokenKeys {
        let keys: Vec<Key> = std::iter::once(current.into())
            .chain(previous.into_iter().map(Into::into))
            .map(|secret| Key {
                id: key_id(&secret),
                mac: HmacSha256::new_from_slice(&secret).expect("HMAC takes any key length"),
            })
            .collect();
        TokenKeys {
            keys: keys.into(),
            ttl_s: DEFAULT_TOKEN_TTL_S,
            accept_v1: true,
        }
    }

    /// Random keys (dev): tokens die with the process.
    pub fn random() -> TokenKeys {
        let secret: [u8; 32] = rand::random();
        TokenKeys::new(secret.to_vec())
    }

    /// The same keys with tokens living `ttl_s` seconds.
    pub fn ttl_s(mut self, ttl_s: u64) -> TokenKeys {
        self.ttl_s = ttl_s;
        self
    }

    /// The same keys, accepting first-format (`v1`) tokens or not.
    pub fn accept_v1(mut self, accept: bool) -> TokenKeys {
        self.accept_v1 = accept;
        self
    }

    /// The id of the key that signs new tokens.
    pub fn current_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// The player a join with the idempotency key `key` creates in
    /// `game_id`: the same for every retry of that join, on any bridge with
    /// the same secret, and unguessable without it (32 hex digits of an
    /// HMAC of the current secret, the shape of a random player id).
    pub fn joined_player(&self, game_id: u64, key: &str) -> String {
        let mut mac = self.keys[0].mac.clone();
        mac.update(format!("join.{game_id}.{key}").as_bytes());
        mac.finalize().into_bytes()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A token naming `player_id` in `game_id`, valid for the configured
    /// lifetime from now.
    pub fn sign(&self, game_id: u64, player_id: &str) -> String {
        self.sign_at(game_id, player_id, now_s())
    }

    /// A token naming `player_id` in `game_id`, valid until `now_s + ttl`.
    pub fn sign_at(&self, game_id: u64, player_id: &str, now_s: u64) -> String {
        let key = &self.keys[0];
        let expires = now_s.saturating_add(self.ttl_s);
        let body = format!("v2.{}.{game_id}.{player_id}.{expires}", key.id);
        let mut mac = key.mac.clone();
        mac.update(body.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// The player a token names, if it is genuine, unexpired and for
    /// `game_id`, by the wall clock.
    pub fn verify(&self, token: &str, game_id: u64) -> Result<String, TokenError> {
        self.verify_at(token, game_id, now_s())
    }

    /// The player a token names, if it is genuine, unexpired at `now_s` and
    /// for `game_id`. Nothing in the token is believed before its signature
    /// is checked.
    pub fn verify_at(&self, token: &str, game_id: u64, now_s: u64) -> Result<String, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (body, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Malformed)?;
        let mut parts = body.split('.');
        match parts.next() {
            Some("v2") => {
                let (Some(kid), Some(game), Some(player), Some(expires), None) = (
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                ) else {
                    return Err(TokenError::Malformed);
                };
                let token_game = parse_decimal(game)?;
                let expires = parse_decimal(expires)?;
                if player.is_empty() {
                    return Err(TokenError::Malformed);
                }
                let mut known = false;
                let mut genuine = false;
                for key in self.keys.iter().filter(|k| k.id == kid) {
                    known = true;
                    if check(&key.mac, body, &sig) {
                        genuine = true;
                        break;
                    }
                }
                if !known {
                    return Err(TokenError::UnknownKey);
                }
                if !genuine {
                    return Err(TokenError::BadSignature);
                }
                if now_s >= expires {
                    return Err(TokenError::Expired(expires));
                }
                if token_game != game_id {
                    return Err(TokenError::OtherGame(token_game));
                }
                Ok(player.to_string())
            }
            Some("v1") => {
                let (Some(game), Some(player), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(TokenError::Malformed);
                };
                let token_game = parse_decimal(game)?;
                if player.is_empty() {
                    return Err(TokenError::Malformed);
                }
                if !self.accept_v1 {
                    return Err(TokenError::Expired(0));
                }
                // v1 signed `v1.<game>.<player>` with no key id: try each key.
                let v1_body = format!("v1.{token_game}.{player}");
                if v1_body != body || !self.keys.iter().any(|k| check(&k.mac, body, &sig)) {
                    return Err(TokenError::BadSignature);
                }
                if token_game != game_id {
                    return Err(TokenError::OtherGame(token_game));
                }
                Ok(player.to_string())
            }
            _ => Err(TokenError::Malformed),
        }
    }

    /// The player behind a request's `Authorization: Bearer <token>` for
    /// `game_id`; a refusal is counted against `client` in `refused`.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        game_id: u64,
        client: &str,
        refused: &RefusedTokens,
    ) -> Result<String, TokenError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(TokenError::Missing);
        let result = token.and_then(|token| self.verify(token.trim(), game_id));
        if let Err(e) = result {
            refused.record(client, e);
        }
        result
    }
}

/// Constant-time comparison of `body`'s MAC with `sig`.
fn check(mac: &HmacSha256, body: &str, sig: &[u8]) -> bool {
    let mut mac = mac.clone();
    mac.update(body.as_bytes());
    mac.verify_slice(sig).is_ok()
}

/// A `u64` written in plain decimal (no sign, no leading zeros but `0`), so a
/// signed value has exactly one spelling.
fn parse_decimal(s: &str) -> Result<u64, TokenError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(TokenError::Malformed);
    }
    s.parse().map_err(|_| TokenError::Malformed)
}

/// How many client addresses [`RefusedTokens`] remembers by default.
pub const REFUSED_TABLE_CAPACITY: usize = 1024;

/// Refused tokens: totals by reason, and counts per client address in a
/// bounded table. When the table is full, a new address replaces the one
/// with the fewest refusals, so the worst sources stay while a flood of
/// one-off addresses cannot grow memory.
#[derive(Debug)]
pub struct RefusedTokens {
    /// Refusals by reason (`bridge_tokens_refused_total`).
    pub by_reason: Family<crate::metrics::ReasonLabels, Counter>,
    by_client: Mutex<HashMap<String, u64>>,
    capacity: usize,
}

impl Default for RefusedTokens {
    fn default() -> Self {
        RefusedTokens::with_capacity(REFUSED_TABLE_CAPACITY)
    }
}

impl RefusedTokens {
    /// A table remembering at most `capacity` addresses.
    pub fn with_capacity(capacity: usize) -> RefusedTokens {
        RefusedTokens {
            by_reason: Family::default(),
            by_client: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Counts one refusal of `client`'s token.
    pub fn record(&self, client: &str, why: TokenError) {
        self.by_reason
            .get_or_create(&crate::metrics::ReasonLabels { reason: why.code() })
            .inc();
        let mut table = self
            .by_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = table.get_mut(client) {
            *count += 1;
            return;
        }
        if table.len() >= self.capacity {
            let fewest = table
                .iter()
                .min_by_key(|(_, count)| **count)
                .map(|(addr, _)| addr.clone());
            if let Some(fewest) = fewest {
                table.remove(&fewest);
            }
        }
        table.insert(client.to_string(), 1);
    }

    /// Refusals counted for `reason` since start.
    pub fn total(&self, reason: TokenError) -> u64 {
        self.by_reason
            .get(&crate::metrics::ReasonLabels {
                reason: reason.code(),
            })
            .map_or(0, |c| c.get())
    }

    /// Refusals counted against `client` (0 if it is not in the table).
    pub fn of_client(&self, client: &str) -> u64 {
        self.by_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(client)
            .copied()
            .unwrap_or(0)
    }

    /// Addresses held in the table.
    pub fn clients(&self) -> usize {
        self.by_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// The `n` addresses with the most refusals, most first.
    pub fn worst(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .by_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(addr, count)| (addr.clone(), *count))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn signed_token_verifies_for_its_game() {
        let keys = TokenKeys::random();
        let token = keys.sign_at(7, "abc", NOW);
        assert!(token.starts_with(&format!("v2.{}.7.abc.", keys.current_key_id())));
        assert_eq!(keys.verify_at(&token, 7, NOW), Ok("abc".to_string()));
        assert_eq!(
            keys.verify_at(&token, 8, NOW),
            Err(TokenError::OtherGame(7))
        );
    }

    #[test]
    fn forged_tokens_are_refused() {
        let keys = TokenKeys::new(b"one".to_vec());
        let other = TokenKeys::new(b"two".to_vec());
        assert_eq!(
            keys.verify_at(&other.sign_at(7, "abc", NOW), 7, NOW),
            Err(TokenError::UnknownKey)
        );
        let token = keys.sign_at(7, "abc", NOW);
        let tampered = token.replace(".abc.", ".abd.");
        assert_eq!(
            keys.verify_at(&tampered, 7, NOW),
            Err(TokenError::BadSignature)
        );
        // A later expiry written in by hand breaks the signature.
        let expires = NOW + DEFAULT_TOKEN_TTL_S;
        let stretched = token.replace(&format!(".{expires}."), &format!(".{}.", expires * 2));
        assert_ne!(stretched, token);
        assert_eq!(
            keys.verify_at(&stretched, 7, NOW),
            Err(TokenError::BadSignature)
        );
        // The kid of a known key on a token signed by another secret.
        let forged = other
            .sign_at(7, "abc", NOW)
            .replace(other.current_key_id(), keys.current_key_id());
        assert_eq!(
            keys.verify_at(&forged, 7, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let keys = TokenKeys::random();
        let good = keys.sign_at(7, "abc", NOW);
        let kid = keys.current_key_id();
        for bad in [
            String::new(),
            "v1.7.abc".into(),
            "v2.x.7.abc.1".into(),
            format!("v2.{kid}.7.abc.{NOW}"),
            format!("v2.{kid}.07.abc.{NOW}.sig"),
            format!("v2.{kid}.-7.abc.{NOW}.sig"),
            format!("v2.{kid}.7..{NOW}.sig"),
            format!("v2.{kid}.7.abc.{NOW}.x.sig"),
            format!("v3.{kid}.7.abc.{NOW}.sig"),
            format!("{good}!"),
            "a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(
                keys.verify_at(&bad, 7, NOW),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn expired_tokens_are_refused() {
        let keys = TokenKeys::random().ttl_s(60);
        let token = keys.sign_at(7, "abc", NOW);
        assert_eq!(keys.verify_at(&token, 7, NOW + 59), Ok("abc".into()));
        assert_eq!(
            keys.verify_at(&token, 7, NOW + 60),
            Err(TokenError::Expired(NOW + 60))
        );
        assert_eq!(
            keys.verify_at(&token, 7, NOW + 1_000_000),
            Err(TokenError::Expired(NOW + 60))
        );
    }

    #[test]
    fn rotation_keeps_tokens_of_the_previous_key() {
        let before = TokenKeys::new(b"old secret".to_vec());
        let old_token = before.sign_at(7, "abc", NOW);
        // Rotated: the new secret signs, the old one still verifies.
        let after = TokenKeys::with_previous(b"new secret".to_vec(), [b"old secret".to_vec()]);
        assert_ne!(after.current_key_id(), before.current_key_id());
        assert_eq!(after.verify_at(&old_token, 7, NOW), Ok("abc".into()));
        let new_token = after.sign_at(7, "abc", NOW);
        assert!(new_token.contains(after.current_key_id()));
        assert_eq!(after.verify_at(&new_token, 7, NOW), Ok("abc".into()));
        // The old secret dropped: its tokens name an unknown key.
        let later = TokenKeys::new(b"new secret".to_vec());
        assert_eq!(
            later.verify_at(&old_token, 7, NOW),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(later.verify_at(&new_token, 7, NOW), Ok("abc".into()));
    }

    #[test]
    fn key_ids_are_stable_and_distinct() {
        assert_eq!(key_id(b"a"), key_id(b"a"));
        assert_ne!(key_id(b"a"), key_id(b"b"));
        assert_eq!(key_id(b"a").len(), 8);
        assert!(!key_id(b"a").contains('.'));
    }

    /// A token of the first format, as the previous bridge signed it.
    fn v1_token(secret: &[u8], game_id: u64, player: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(secret).expect("any key length");
        mac.update(format!("v1.{game_id}.{player}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("v1.{game_id}.{player}.{sig}")
    }

    #[test]
    fn v1_tokens_live_while_their_key_is_configured() {
        let old = v1_token(b"old secret", 7, "abc");
        let keys = TokenKeys::with_previous(b"new secret".to_vec(), [b"old secret".to_vec()]);
        assert_eq!(keys.verify_at(&old, 7, NOW), Ok("abc".into()));
        assert_eq!(keys.verify_at(&old, 8, NOW), Err(TokenError::OtherGame(7)));
        assert_eq!(
            TokenKeys::new(b"new secret".to_vec()).verify_at(&old, 7, NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            keys.clone().accept_v1(false).verify_at(&old, 7, NOW),
            Err(TokenError::Expired(0))
        );
        // A spelling the old bridge never signed (leading zero) is refused.
        let odd = old.replacen("v1.7.", "v1.07.", 1);
        assert_eq!(keys.verify_at(&odd, 7, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn authorize_counts_refusals_per_client() {
        let keys = TokenKeys::random();
        let refused = RefusedTokens::default();
        let mut headers = HeaderMap::new();
        assert_eq!(
            keys.authorize(&headers, 7, "10.0.0.1", &refused),
            Err(TokenError::Missing)
        );
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {}", keys.sign(7, "abc")).parse().unwrap(),
        );
        assert_eq!(
            keys.authorize(&headers, 7, "10.0.0.1", &refused),
            Ok("abc".into())
        );
        assert_eq!(
            keys.authorize(&headers, 8, "10.0.0.2", &refused),
            Err(TokenError::OtherGame(7))
        );
        headers.insert(header::AUTHORIZATION, "Bearer v2.x".parse().unwrap());
        assert_eq!(
            keys.authorize(&headers, 7, "10.0.0.1", &refused),
            Err(TokenError::Malformed)
        );
        assert_eq!(refused.of_client("10.0.0.1"), 2);
        assert_eq!(refused.of_client("10.0.0.2"), 1);
        assert_eq!(refused.total(TokenError::Missing), 1);
        assert_eq!(refused.total(TokenError::Malformed), 1);
        assert_eq!(refused.total(TokenError::OtherGame(0)), 1);
        assert_eq!(refused.total(TokenError::Expired(0)), 0);
    }

    #[test]
    fn the_refusal_table_is_bounded_and_keeps_the_worst() {
        let refused = RefusedTokens::with_capacity(4);
        for _ in 0..10 {
            refused.record("attacker", TokenError::BadSignature);
        }
        for i in 0..1000 {
            refused.record(&format!("passer-by-{i}"), TokenError::Expired(0));
        }
        assert_eq!(refused.clients(), 4);
        assert_eq!(refused.of_client("attacker"), 10);
        assert_eq!(refused.worst(1), vec![("attacker".to_string(), 10)]);
        assert_eq!(refused.total(TokenError::Expired(0)), 1000);
    }
}
