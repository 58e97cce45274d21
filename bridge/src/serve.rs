//! Serving the router on a listener, guarded against slow and greedy clients.
//!
//! - **Header read timeout**: a connection that has not sent a whole request
//!   head within [`ServeSettings::header_timeout`] of starting to wait for one
//!   is closed (hyper's HTTP/1 `header_read_timeout`): a slowloris client that
//!   trickles header lines, or an idle keep-alive connection, holds a socket
//!   for that long at most.
//! - **Body read timeout**: [`read_body`] reads a request body whole
//!   within [`ServeSettings::body_timeout`] (one deadline for the body, not
//!   per byte, so a trickle does not keep it alive) and answers `408` JSON
//!   otherwise; a declared `Content-Length` over the limit is a `413` at once.
//! - **Per-address connection limit**: at most
//!   [`ServeSettings::max_connections_per_addr`] open TCP connections per
//!   peer address, WebSockets included (the count is released when the socket
//!   closes, upgraded or not); one more gets a `429` JSON answer and is
//!   closed. Trusted proxies are exempt: every client behind them shares
//!   their address.
//!
//! [`serve`] replaces `axum::serve` (which exposes none of these knobs) with
//! the same behaviour otherwise: HTTP/1 and HTTP/2, upgrades, `ConnectInfo`,
//! `TCP_NODELAY`, graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;

use prometheus_client::metrics::counter::Counter;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::error::AppError;

/// Default of [`ServeSettings::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ServeSettings::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ServeSettings::max_connections_per_addr`]: far above what a
/// load tool (`wrk -c 256`, `ab -c 256`) or a household behind one NAT opens.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDR: usize = 1024;

/// The guards' knobs (flags in [`crate::Config`]).
#[derive(Clone, Debug)]
pub struct ServeSettings {
    /// How long a request head may take to arrive, from when the connection
    /// starts waiting for it (also the keep-alive idle time).
    pub header_timeout: Duration,
    /// How long a whole request body may take to arrive.
    pub body_timeout: Duration,
    /// Open connections allowed per peer address.
    pub max_connections_per_addr: usize,
    /// Peers exempt from the limit (the trusted proxies).
    pub unlimited: Vec<IpAddr>,
    /// The largest body read (a larger one is a 413).
    pub body_limit: usize,
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections_per_addr: DEFAULT_MAX_CONNECTIONS_PER_ADDR,
            unlimited: Vec::new(),
            body_limit: crate::BODY_LIMIT,
        }
    }
}

/// Open connections per address, and what the guards refused (`/metrics`).
#[derive(Debug, Default)]
pub struct Connections {
    pub settings: ServeSettings,
    open: Mutex<HashMap<IpAddr, usize>>,
    pub accepted: Counter,
    pub refused: Counter,
    pub header_timeouts: Counter,
    pub body_timeouts: Counter,
}

/// One counted connection; dropping it (when the socket closes) frees its
/// place.
#[derive(Debug)]
pub struct Slot {
    table: Arc<Connections>,
    addr: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(addr) = self.addr else {
            return;
        };
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                open.remove(&addr);
            }
        }
    }
}

impl Connections {
    /// A table enforcing `settings`.
    pub fn new(settings: ServeSettings) -> Arc<Connections> {
        Arc::new(Connections {
            settings,
            ..Connections::default()
        })
    }

    /// A place for one more connection from `addr`, unless it has its fill.
    pub fn try_open(self: &Arc<Self>, addr: IpAddr) -> Option<Slot> {
        if self.settings.unlimited.contains(&addr) {
            return Some(Slot {
                table: self.clone(),
                addr: None,
            });
        }
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(addr).or_insert(0);
        if *n >= self.settings.max_connections_per_addr {
            return None;
        }
        *n += 1;
        Some(Slot {
            table: self.clone(),
            addr: Some(addr),
        })
    }

    /// Connections open from `addr` (exempt peers are not counted).
    pub fn open_from(&self, addr: IpAddr) -> usize {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&addr)
            .copied()
            .unwrap_or(0)
    }
}

/// A socket that holds its [`Slot`] for as long as it lives, through an
/// upgrade to a WebSocket too.
struct CountedStream {
    inner: TcpStream,
    _slot: Slot,
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The answer to a connection over the per-address limit, written straight
/// to the fresh socket (its send buffer is empty, so it never blocks).
static TOO_MANY_CONNECTIONS: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let body = json!({
        "error": "too_many_connections",
        "detail": "too many open connections from your address; close some and retry",
    })
    .to_string();
    format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting, lets open requests finish and returns (WebSockets are closed
/// by their own loop). Every connection is counted in `connections`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(connections.settings.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = connections.try_open(peer.ip()) else {
            connections.refused.inc();
            refuse(stream);
            continue;
        };
        connections.accepted.inc();
        // TCP_NODELAY: a WebSocket sends many small frames, and Nagle's
        // algorithm against the client's delayed ACKs held some for ~40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        let service = router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        );
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let connections = connections.clone();
        tokio::spawn(async move {
            // hyper's header timeout starts once it knows the protocol: a
            // client that sends nothing (or half the HTTP/2 preface) would
            // hold the socket forever before that.
            let deadline = tokio::time::Instant::now() + connections.settings.header_timeout;
            if !first_bytes_by(&stream, deadline).await {
                connections.header_timeouts.inc();
                return;
            }
            let io = TokioIo::new(CountedStream {
                inner: stream,
                _slot: slot,
            });
            let conn = builder
                .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                let timed_out = e
                    .downcast_ref::<hyper::Error>()
                    .is_some_and(hyper::Error::is_timeout);
                if timed_out {
                    connections.header_timeouts.inc();
                }
                tracing::debug!(%peer, timed_out, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `stream` shows, by `deadline`, enough bytes to tell HTTP/1 from
/// HTTP/2 (false: silent, closed, or a preface trickled too slowly).
async fn first_bytes_by(stream: &TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 24];
    loop {
        match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) | Ok(Err(_)) | Ok(Ok(0)) => return false,
            Ok(Ok(n)) if n >= H2_PREFACE.len() || buf[..n] != H2_PREFACE[..n] => return true,
            // Part of the preface: peek again shortly (peek would return
            // the same bytes at once).
            Ok(Ok(_)) => {
                if tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(20)))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        }
    }
}

/// Connections over the limit still being answered (each for 200 ms at
/// most); past [`MAX_REFUSING`] they are just closed.
static REFUSING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const MAX_REFUSING: usize = 256;

/// Answers a connection over the limit with a `429` and closes it, reading
/// what the client sent meanwhile so the close does not reset the answer
/// away.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(&TOO_MANY_CONNECTIONS);
    if REFUSING.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
        REFUSING.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            use tokio::io::AsyncReadExt as _;
            use tokio::io::AsyncWriteExt as _;
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            let mut total = 0;
            while let Ok(n @ 1..) = stream.read(&mut sink).await {
                total += n;
                if total > 64 * 1024 {
                    break;
                }
            }
        })
        .await;
        REFUSING.fetch_sub(1, Ordering::Relaxed);
    });
}

/// After a failed `accept`: a client that gave up is nothing; anything else
/// (out of file descriptors) waits a little instead of spinning.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Reads a request's body whole within the body timeout before `inner` (the
/// handler, see [`crate::edge`]) sees it (`408` otherwise), refusing at once
/// a declared length over the limit (`413`). Requests without a body pass
/// untouched.
pub async fn read_body<F, Fut>(connections: &Connections, request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    use axum::body::HttpBody;
    if request.body().is_end_stream() {
        return inner(request).await;
    }
    let settings = &connections.settings;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > settings.body_limit as u64) {
        return AppError::PayloadTooLarge.into_response();
    }
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, settings.body_limit);
    match tokio::time::timeout(settings.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => {
            let request = Request::from_parts(parts, Body::from(collected.to_bytes()));
            inner(request).await
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            AppError::PayloadTooLarge.into_response()
        }
        Ok(Err(e)) => {
            AppError::BadRequest(json!(format!("could not read the body: {e}"))).into_response()
        }
        Err(_) => {
            connections.body_timeouts.inc();
            let mut response = (
                StatusCode::REQUEST_TIMEOUT,
                Json(json!({
                    "error": "body_timeout",
                    "detail": format!(
                        "the request body did not arrive within {} s",
                        settings.body_timeout.as_secs_f64()
                    ),
                })),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_per_address_and_frees_on_drop() {
        let table = Connections::new(ServeSettings {
            max_connections_per_addr: 2,
            unlimited: vec!["10.0.0.9".parse().unwrap()],
            ..ServeSettings::default()
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = table.try_open(a).unwrap();
        let _second = table.try_open(a).unwrap();
        assert!(table.try_open(a).is_none());
        let _other = table.try_open(b).unwrap();
        assert_eq!(table.open_from(a), 2);
        drop(first);
        assert_eq!(table.open_from(a), 1);
        assert!(table.try_open(a).is_some());
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let held: Vec<Slot> = (0..10).map(|_| table.try_open(proxy).unwrap()).collect();
        assert_eq!(held.len(), 10);
        assert_eq!(table.open_from(proxy), 0);
    }

    #[test]
    fn the_refusal_is_a_well_formed_json_429() {
        let text = std::str::from_utf8(&TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "too_many_connections");
    }
}
