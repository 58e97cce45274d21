//! Player tokens: `v1.<game_id>.<player_id>.<hmac>`, signed by the bridge.
//!
//! HMAC-SHA256 over `v1.<game_id>.<player_id>` with the configured secret; any
//! bridge with the same secret accepts any other's tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies tokens.
#[derive(Clone)]
pub struct TokenKeys {
    secret: Vec<u8>,
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("token is for game {0}")]
    OtherGame(u64),
}

impl TokenKeys {
    /// Keys from a configured secret.
    pub fn new(secret: impl Into<Vec<u8>>) -> TokenKeys {
        TokenKeys {
            secret: secret.into(),
        }
    }

    /// Random keys (dev): tokens die with the process.
    pub fn random() -> TokenKeys {
        let secret: [u8; 32] = rand::random();
        TokenKeys::new(secret.to_vec())
    }

    fn mac(&self, game_id: u64, player_id: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("v1.{game_id}.{player_id}").as_bytes());
        mac
    }

    /// A token naming `player_id` in `game_id`.
    pub fn sign(&self, game_id: u64, player_id: &str) -> String {
        let sig = self.mac(game_id, player_id).finalize().into_bytes();
        format!("v1.{game_id}.{player_id}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// The player a token names, if it is genuine and for `game_id`.
    pub fn verify(&self, token: &str, game_id: u64) -> Result<String, TokenError> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(game), Some(player), Some(sig), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let token_game: u64 = game.parse().map_err(|_| TokenError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Malformed)?;
        self.mac(token_game, player)
            .verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        if token_game != game_id {
            return Err(TokenError::OtherGame(token_game));
        }
        Ok(player.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_token_verifies_for_its_game() {
        let keys = TokenKeys::random();
        let token = keys.sign(7, "abc");
        assert_eq!(keys.verify(&token, 7), Ok("abc".to_string()));
        assert_eq!(keys.verify(&token, 8), Err(TokenError::OtherGame(7)));
    }

    #[test]
    fn forged_tokens_are_refused() {
        let keys = TokenKeys::random();
        let other = TokenKeys::random();
        assert_eq!(
            keys.verify(&other.sign(7, "abc"), 7),
            Err(TokenError::BadSignature)
        );
        let token = keys.sign(7, "abc");
        let tampered = token.replace(".abc.", ".abd.");
        assert_eq!(keys.verify(&tampered, 7), Err(TokenError::BadSignature));
        assert_eq!(keys.verify("v1.7.abc", 7), Err(TokenError::Malformed));
        assert_eq!(keys.verify("", 7), Err(TokenError::Malformed));
    }
}
