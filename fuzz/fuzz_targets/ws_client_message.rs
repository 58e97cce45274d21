//! What a browser sends on `/ws/games/{game_id}`: raw bytes on the socket
//! (frames, masking, fragmentation, control frames) read by tungstenite as a
//! server with the bridge's limits (bridge/src/routes.rs `ws`), then every
//! text message decoded as the socket loop does (bridge/src/ws.rs: at most
//! `max_client_frame` bytes, `shared::wire::ClientMessage`).
//!
//! Oracle: never a panic; a message that decodes re-encodes to itself.

#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use shared::wire::ClientMessage;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// `WsSettings::default().max_client_frame`.
const MAX_CLIENT_FRAME: usize = 1024;

fn decode(text: &str) -> Option<ClientMessage> {
    (text.len() <= MAX_CLIENT_FRAME)
        .then(|| serde_json::from_str::<ClientMessage>(text).ok())
        .flatten()
}

fuzz_target!(|data: &[u8]| {
    // The first byte says whether the bytes are a message's text or a raw
    // frame stream.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            if let Some(message) = decode(text) {
                let again = serde_json::to_string(&message).expect("encodes");
                assert_eq!(decode(&again), Some(message));
            }
        }
        return;
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(64 * 1024));
    let mut socket =
        WebSocket::from_raw_socket(Cursor::new(rest.to_vec()), Role::Server, Some(config));
    // Each read consumes input; 1,000 messages is more than any input holds.
    for _ in 0..1000 {
        match socket.read() {
            Ok(Message::Text(text)) => {
                let _ = decode(text.as_str());
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
});
