//! Stamping: what the bridge adds to every action it publishes.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use shared::{ActionEnvelope, ActionType};

/// The client's address: the peer, or the first `X-Forwarded-For` hop when
/// the peer is a configured trusted proxy. Never fails: without connection
/// info (in-process tests) it is `unknown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub String);

/// Trusted proxies, stored in request extensions by the app.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub std::sync::Arc<Vec<IpAddr>>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let trusted = parts.extensions.get::<TrustedProxies>();
        Ok(ClientAddr(client_addr(
            peer,
            &parts.headers,
            trusted.map(|t| t.0.as_slice()).unwrap_or(&[]),
        )))
    }
}

/// Picks the client address from the peer and `X-Forwarded-For`.
pub fn client_addr(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> String {
    match peer {
        Some(peer) if trusted.contains(&peer) => headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .and_then(|v| v.parse::<IpAddr>().ok())
            .unwrap_or(peer)
            .to_string(),
        Some(peer) => peer.to_string(),
        None => "unknown".to_string(),
    }
}

/// The most of a header's value stamped into an action: a 20 KiB
/// `User-Agent` is lawful HTTP, but it would be copied into every record.
pub const MAX_STAMPED_HEADER: usize = 512;

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .map(|v| {
            let bytes = v.as_bytes();
            String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_STAMPED_HEADER)]).into_owned()
        })
        .unwrap_or_default()
}

/// The `Host` header (the seed's player identity).
pub fn host(headers: &HeaderMap) -> String {
    header_text(headers, header::HOST)
}

/// Milliseconds since the Unix epoch, from the bridge's clock: the only clock
/// the rules ever see.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Builds the envelope for one action.
pub fn stamp(
    event_id: String,
    game_id: u64,
    player_id: String,
    event_type: ActionType,
    headers: &HeaderMap,
    client: ClientAddr,
) -> ActionEnvelope {
    ActionEnvelope {
        host: host(headers),
        user_agent: header_text(headers, header::USER_AGENT),
        accept: header_text(headers, header::ACCEPT),
        client_addr: client.0,
        ..ActionEnvelope::new(event_id, game_id, player_id, event_type, now_ms())
    }
}

/// A new time-ordered action id.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(client_addr(Some(proxy), &headers, &[proxy]), "203.0.113.9");
        assert_eq!(client_addr(Some(proxy), &headers, &[]), "127.0.0.1");
        assert_eq!(client_addr(None, &headers, &[proxy]), "unknown");
    }
}
