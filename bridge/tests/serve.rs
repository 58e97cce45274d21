//! The HTTP guards on a real socket (port 0, in-memory publisher, no Kafka):
//! a slowloris client is cut off at the header timeout while others are
//! served, a trickled body gets a 408, and the per-address limit refuses one
//! connection too many, WebSockets included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bridge::kafka::MemoryPublisher;
use bridge::serve::{Connections, ServeSettings};
use bridge::{app, AppState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const HEADER_TIMEOUT: Duration = Duration::from_millis(600);
const BODY_TIMEOUT: Duration = Duration::from_millis(600);
/// Scheduling slack on a loaded machine: "closed at the timeout" means
/// closed between the timeout and the timeout plus this.
const SLACK: Duration = Duration::from_secs(3);

struct Server {
    addr: SocketAddr,
    connections: Arc<Connections>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(max_connections_per_addr: usize, header_timeout: Duration) -> Server {
    let mut state = AppState::for_tests(Arc::new(MemoryPublisher {
        partitions: 12,
        ..MemoryPublisher::default()
    }));
    let connections = Connections::new(ServeSettings {
        header_timeout,
        body_timeout: BODY_TIMEOUT,
        max_connections_per_addr,
        ..ServeSettings::default()
    });
    state.connections = connections.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bridge::serve::serve(
        listener,
        app(state),
        connections.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        connections,
        stop: Some(stop),
    }
}

/// One request on a fresh connection; the status and body.
async fn request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// Reads until the server closes `stream`, failing past `deadline`.
async fn closed_within(stream: &mut TcpStream, deadline: Duration) -> Vec<u8> {
    let mut seen = Vec::new();
    tokio::time::timeout(deadline, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closed the connection in time");
    seen
}

#[tokio::test]
async fn a_slowloris_connection_is_closed_at_the_header_timeout_while_others_are_served() {
    let server = start(64, HEADER_TIMEOUT).await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    // Keep trickling header lines, never the blank line that ends them, while
    // a normal client is served.
    let trickle = tokio::spawn(async move {
        let mut i = 0u32;
        loop {
            if slow
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut probe = [0u8; 1];
            // Closed by the server: reading gives 0 or an error at once.
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await
            {
                break;
            }
        }
        Instant::now()
    });
    let (status, body) = request(server.addr, HEALTHZ).await;
    assert_eq!(status, 200, "{body}");
    let closed_at = tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .expect("the slow connection was closed")
        .unwrap();
    let held = closed_at - started;
    assert!(
        held >= HEADER_TIMEOUT && held < HEADER_TIMEOUT + SLACK,
        "held {held:?} for a timeout of {HEADER_TIMEOUT:?}"
    );
    // Counted (the task that counts may finish just after the close).
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.connections.header_timeouts.get() == 0 {
        assert!(Instant::now() < deadline, "header timeout not counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A connection that sends nothing at all is closed too.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    closed_within(&mut silent, HEADER_TIMEOUT + SLACK).await;
}

#[tokio::test]
async fn a_trickled_body_gets_a_408_and_a_whole_one_is_served() {
    let server = start(64, HEADER_TIMEOUT).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(
        b"POST /api/games/1/join HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\"",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let answer = closed_within(&mut slow, BODY_TIMEOUT + SLACK).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("\"error\":\"body_timeout\""), "{text}");
    assert!(started.elapsed() >= BODY_TIMEOUT - Duration::from_millis(50));
    let body = r#"{"name":"Rome"}"#;
    let (status, answer) = request(
        server.addr,
        &format!(
            "POST /api/games/1/join HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // A declared length over the limit is refused before any of it is read.
    let (status, answer) = request(
        server.addr,
        "POST /api/games/1/join HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 413, "{answer}");
}

#[tokio::test]
async fn one_connection_over_the_per_address_limit_is_refused() {
    // Idle connections must outlive the test here.
    let server = start(3, Duration::from_secs(60)).await;
    let ip = "127.0.0.1".parse().unwrap();
    // Two idle HTTP connections and one WebSocket hold the three places.
    let _a = TcpStream::connect(server.addr).await.unwrap();
    let _b = TcpStream::connect(server.addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/games/1", server.addr))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.connections.open_from(ip) < 3 {
        assert!(Instant::now() < deadline, "connections not counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, body) = request(server.addr, HEALTHZ).await;
    assert_eq!(status, 429, "{body}");
    let json: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(json["error"], "too_many_connections");
    // The upgraded socket still holds its place; closing it frees it.
    assert_eq!(server.connections.open_from(ip), 3);
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.connections.open_from(ip) > 2 {
        assert!(
            Instant::now() < deadline,
            "the WebSocket's place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, body) = request(server.addr, HEALTHZ).await;
    assert_eq!(status, 200, "{body}");
}
