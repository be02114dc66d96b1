//! The HTTP accept loop, in place of `axum::serve`, for the limits it
//! cannot set: at most `max_connections` connections at once (the next
//! one waits in the kernel's backlog until one closes), and a deadline for
//! a request's head (`header_timeout`, which also closes a connection idle
//! between requests). The body's deadline is a layer of the router
//! (`tower_http`'s `RequestBodyTimeoutLayer`, see `application::router`).
//! On shutdown every connection finishes its request under way and closes.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    Router,
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
};
use tower::ServiceExt;

/// The limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// From the first byte awaited to the end of a request's head.
    pub header_timeout: Duration,
    /// How long shutdown waits for connections to finish.
    pub drain: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// connections finish (at most `limits.drain`).
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let max = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut full_warned = false;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => {
                full_warned = false;
                p
            }
            Err(_) => {
                if !full_warned {
                    tracing::warn!(max, "connection limit reached; new connections wait");
                    metrics::counter!("lockstep_http_connection_limit_total").increment(1);
                    full_warned = true;
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut stopping = stopping.clone();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let router = router.clone();
                async move { router.oneshot(req.map(Body::new)).await }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stopped(&mut stopping) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every permit back means every connection has closed.
    let drained = tokio::time::timeout(limits.drain, permits.acquire_many(max as u32)).await;
    if drained.is_err() {
        tracing::warn!(
            drain = ?limits.drain,
            "connections still open after the shutdown drain; closing them"
        );
    }
    Ok(())
}

/// Completes once `stopping` is true (the guard `wait_for` returns is
/// dropped here, so the connection's future stays `Send`).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// The peer of a request, as [`run`] records it (also what
/// `ConnectInfo<SocketAddr>` extracts).
pub fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a)
}
