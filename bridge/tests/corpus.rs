//! Hostile input: the corpus of malformed HTTP requests and WebSocket frames
//! in `tests/corpus/` (written by `tests/corpus/generate.py`), replayed over
//! TCP against a running bridge. Every request gets a 4xx (a JSON
//! `{"error", "detail"}` body when the bridge's own handlers answer), or,
//! for raw garbage, a closed connection; never a 5xx, never a hang; every
//! bad frame closes its socket; and the bridge serves normally afterwards.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::auth::TokenKeys;
use bridge::kafka::MemoryPublisher;
use bridge::{app, AppState};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &[u8] = b"corpus-secret";

/// A bridge on a free port, with a static folder holding the page and,
/// beside it (outside it), a file no request may reach.
async fn serve() -> (SocketAddr, PathBuf) {
    let root = std::env::temp_dir().join(format!("corpus-{}", uuid::Uuid::new_v4().simple()));
    let dist = root.join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(dist.join("index.html"), "<html>the game</html>").unwrap();
    std::fs::write(root.join("outside.txt"), "SECRET-OUTSIDE").unwrap();
    let publisher = Arc::new(MemoryPublisher {
        partitions: 12,
        ..MemoryPublisher::default()
    });
    let mut state = AppState::for_tests(publisher);
    state.keys = TokenKeys::new(SECRET.to_vec());
    state.static_dir = dist;
    state.ws.load_timeout = Duration::from_millis(50);
    // The corpus is hundreds of refusals from one address: each must get
    // its own answer, not the ban (tested on its own).
    state.guard = bridge::guard::Guard::new(
        &bridge::guard::GuardSettings {
            ban_after: 0,
            ..Default::default()
        },
        state.metrics.clone(),
        state.trusted_proxies.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The bridge's own serving, with its header/body timeouts and limits.
    let connections = state.connections.clone();
    tokio::spawn(async move {
        bridge::serve::serve(listener, app(state), connections, std::future::pending())
            .await
            .unwrap();
    });
    (addr, root)
}

fn corpus(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Fills the placeholders with real, tampered and misplaced tokens.
fn fill(request: &[u8]) -> Vec<u8> {
    let keys = TokenKeys::new(SECRET.to_vec());
    let token = keys.sign(1, "corpus-player");
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let other = keys.sign(2, "corpus-player");
    let expired = keys
        .clone()
        .ttl_s(60)
        .sign_at(1, "corpus-player", bridge::auth::now_s() - 61);
    let retired = TokenKeys::new(b"a secret rotated out".to_vec()).sign(1, "corpus-player");
    let text = String::from_utf8_lossy(request);
    if !text.contains("{{") {
        return request.to_vec();
    }
    // Placeholders only sit in header lines, which are ASCII.
    let head_end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(request.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&request[..head_end])
        .replace("{{TOKEN_TAMPERED}}", &tampered)
        .replace("{{TOKEN_OTHER_GAME}}", &other)
        .replace("{{TOKEN_EXPIRED}}", &expired)
        .replace("{{TOKEN_RETIRED_KEY}}", &retired)
        .replace("{{TOKEN}}", &token);
    let mut out = head.into_bytes();
    out.extend_from_slice(&request[head_end..]);
    out
}

/// Sends one raw request and reads the answer to the end (each asks for
/// `Connection: close`); `None` when the bridge closed without answering.
/// A request the bridge is still waiting on after 2 s (a body shorter than
/// declared) is ended by closing our side.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The bridge may answer (413, 431) before reading everything: a write
    // error then is part of the exchange, not a failure.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let first = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
    if first.is_err() {
        let _ = stream.shutdown().await;
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the bridge hung on this request");
    }
    (!answer.is_empty()).then_some(answer)
}

/// The bridge still answers `/healthz`.
async fn assert_healthy(addr: SocketAddr) {
    let health = exchange(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("an answer to /healthz");
    assert_eq!(status_of(&health), 200);
}

fn status_of(answer: &[u8]) -> u16 {
    let line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {line:?}"))
}

fn body_of(answer: &[u8]) -> &[u8] {
    answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |p| &answer[p + 4..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_request_gets_a_clear_4xx_and_the_bridge_stays_up() {
    let (addr, root) = serve().await;
    let files = corpus("http");
    assert!(files.len() >= 300, "a corpus of at least 300 requests");
    let started = Instant::now();
    let mut statuses: std::collections::BTreeMap<u16, usize> = Default::default();
    let mut closed = 0;
    let mut other_protocol = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let request = fill(&std::fs::read(file).unwrap());
        let Some(answer) = exchange(addr, &request).await else {
            assert!(name.starts_with("raw-"), "{name}: closed without an answer");
            closed += 1;
            continue;
        };
        if name.starts_with("raw-") && !answer.starts_with(b"HTTP/1.") {
            // The HTTP/2 preface is answered in HTTP/2 (a SETTINGS frame)
            // when the server's HTTP/2 support is compiled in.
            assert!(name.contains("malformed"), "{name}: {answer:?}");
            other_protocol += 1;
            continue;
        }
        let status = status_of(&answer);
        *statuses.entry(status).or_default() += 1;
        let body = body_of(&answer);
        assert!(
            !String::from_utf8_lossy(body).contains("SECRET-OUTSIDE"),
            "{name}: a file outside the static folder was served"
        );
        // A large but lawful header may pass (what is stamped of it is
        // capped).
        let may_pass = name.contains("-header-") && !name.contains("-header-flood");
        if may_pass && status < 300 {
            continue;
        }
        assert!(
            (400..500).contains(&status),
            "{name}: expected a 4xx, got {status}: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(600)])
        );
        // Chunked bodies are not decoded here: check non-empty plain ones.
        let plain = !String::from_utf8_lossy(&answer[..answer.len() - body.len()])
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        if plain && !body.is_empty() {
            let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
                panic!(
                    "{name}: a {status} whose body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                )
            });
            assert!(
                json["error"].is_string() && !json["detail"].is_null(),
                "{name}: {json}"
            );
            let expected = if name.contains("token-expired") {
                Some("token_expired")
            } else if name.contains("token-retired-key") {
                Some("unknown_token_key")
            } else {
                None
            };
            if let Some(code) = expected {
                assert_eq!(
                    (status, json["error"].as_str()),
                    (401, Some(code)),
                    "{name}"
                );
            }
        }
    }
    println!(
        "{} requests in {:?}: statuses {statuses:?}, {closed} closed without an answer, {other_protocol} answered in another protocol",
        files.len(),
        started.elapsed()
    );
    // Still up, still right.
    assert_healthy(addr).await;
    let join = exchange(
        addr,
        b"POST /api/games/1/join HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"name\":\"Rome\"}",
    )
    .await
    .unwrap();
    assert_eq!(status_of(&join), 200, "{}", String::from_utf8_lossy(&join));
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_websocket_frame_closes_its_socket_and_the_bridge_stays_up() {
    let (addr, root) = serve().await;
    let files = corpus("ws");
    assert!(files.len() >= 20);
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(file).unwrap();
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/games/1"))
            .await
            .unwrap_or_else(|e| panic!("{name}: upgrade: {e}"));
        let message = if name.ends_with(".bin") {
            Message::Binary(data.into())
        } else {
            Message::Text(String::from_utf8(data).unwrap().into())
        };
        let _ = socket.send(message).await;
        // Read until the bridge closes: a close frame (policy, or too big)
        // or the connection dropped; never an endless session.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut code = None;
        loop {
            assert!(Instant::now() < deadline, "{name}: the socket stayed open");
            match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => {
                    code = frame.map(|f| u16::from(f.code));
                    break;
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) => break,
                Err(_) => panic!("{name}: no close within 10 s"),
            }
        }
        if let Some(code) = code {
            assert!(
                [1003, 1007, 1008, 1009].contains(&code),
                "{name}: closed with {code}"
            );
        }
    }
    assert_healthy(addr).await;
    let _ = std::fs::remove_dir_all(root);
}
