//! Every request's way to its handler, as one layer: the per-route HTTP
//! metrics outside, then the guard ([`crate::guard`]: bans, rate limits,
//! refusals counted and logged), then the body read within its deadline
//! ([`crate::serve::read_body`]), and the trusted proxies put where
//! [`crate::enrich::ClientAddr`] finds them.
//!
//! These were four layers (three `from_fn` middlewares and an `Extension`).
//! Each `Router::layer` wraps every route in one more boxed service, which
//! every request clones, calls through a boxed future and drops: under `wrk`
//! that nesting cost more of the bridge's CPU than any one thing the layers
//! do (BENCHMARKS.md, P1). One hand-written layer clones and boxes once.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use ops::metrics::{method_label, route_label, HttpMetrics};
use tower::{Layer, Service, ServiceExt};

use crate::enrich::TrustedProxies;
use crate::guard::{guard_at, Guard};
use crate::serve::{read_body, Connections};

/// What the edge needs, shared by every route's copy of the layer.
pub struct Edge {
    pub guard: Guard,
    pub connections: Arc<Connections>,
    /// `None` when metrics are off (`METRICS_ENABLED=false`).
    pub http: Option<HttpMetrics>,
    pub trusted: TrustedProxies,
}

impl Edge {
    /// One request through the guards to `inner`, and its metrics.
    async fn handle<S>(&self, request: Request, inner: S) -> Response
    where
        S: Service<Request, Error = Infallible>,
        S::Response: IntoResponse,
    {
        let started = Instant::now();
        let method = method_label(request.method());
        let route = route_label(&request);
        let response = guard_at(
            &self.guard,
            request,
            route,
            crate::enrich::now_ms(),
            |request| {
                read_body(&self.connections, request, |request| async move {
                    match inner.oneshot(request).await {
                        Ok(response) => response.into_response(),
                        Err(never) => match never {},
                    }
                })
            },
        )
        .await;
        if let Some(http) = &self.http {
            http.observe(
                method,
                route,
                response.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
        }
        response
    }
}

/// The [`Layer`] for `Router::layer`.
#[derive(Clone)]
pub struct EdgeLayer(pub Arc<Edge>);

impl<S> Layer<S> for EdgeLayer {
    type Service = EdgeService<S>;

    fn layer(&self, inner: S) -> EdgeService<S> {
        EdgeService {
            edge: self.0.clone(),
            inner,
        }
    }
}

/// [`EdgeLayer`]'s service around one route.
#[derive(Clone)]
pub struct EdgeService<S> {
    edge: Arc<Edge>,
    inner: S,
}

impl<S> Service<Request> for EdgeService<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The inner service is readied when it is called (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        request.extensions_mut().insert(self.edge.trusted.clone());
        let (edge, inner) = (self.edge.clone(), self.inner.clone());
        Box::pin(async move { Ok(edge.handle(request, inner).await) })
    }
}
