//! The HTTP accept loop, in place of `axum::serve`, for the limits it
//! cannot set: at most `max_connections` connections at once (the next
//! one waits in the kernel's backlog until one closes), and a deadline for
//! a request's head (`header_timeout`, which also closes a connection idle
//! between requests). The body's deadline is a layer of the router
//! (`tower_http`'s `TimeoutLayer` over the whole request, see
//! `application::router`).
//! On shutdown every connection finishes its request under way and closes.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    http::HeaderMap,
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
#[derive(Clone, Debug)]
pub struct Limits {
    /// Reverse proxies whose `X-Forwarded-For` names the client (their
    /// own address otherwise stands for every client).
    pub trusted_proxies: Arc<Vec<IpAddr>>,
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
        let trusted = limits.trusted_proxies.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let client = client_of(peer, req.headers(), &trusted);
                req.extensions_mut().insert(ConnectInfo(client));
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

/// Who sent a request: the socket's peer, or, when that is a trusted
/// proxy, the nearest address in `X-Forwarded-For` that is not one (read
/// from the right: each proxy appends the address it got the request from,
/// and only the trusted ones' entries can be believed).
pub fn client_of(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> SocketAddr {
    if !trusted.contains(&peer.ip().to_canonical()) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip.to_canonical()) => continue,
            Ok(ip) => return SocketAddr::new(ip, peer.port()),
            // A garbled entry: nothing left of it can be believed.
            Err(_) => return peer,
        }
    }
    peer
}

/// The peer of a request, as [`run`] records it (also what
/// `ConnectInfo<SocketAddr>` extracts).
pub fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().expect("header"));
        }
        h
    }

    #[test]
    fn only_a_trusted_proxy_names_the_client() {
        let proxy: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let stranger: SocketAddr = "203.0.113.9:5000".parse().expect("addr");
        let trusted = vec![
            "127.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        ];
        let ip = |a: SocketAddr| a.ip().to_string();
        // Through the trusted proxy: the last untrusted hop.
        assert_eq!(
            ip(client_of(
                proxy,
                &headers(&["198.51.100.7, 10.0.0.2"]),
                &trusted
            )),
            "198.51.100.7"
        );
        // A client forging the header cannot pick its address: only the
        // entries trusted proxies appended are read, from the right.
        assert_eq!(
            ip(client_of(
                proxy,
                &headers(&["1.1.1.1", "198.51.100.7"]),
                &trusted
            )),
            "198.51.100.7"
        );
        // Not from a trusted proxy: the header is ignored.
        assert_eq!(
            ip(client_of(stranger, &headers(&["1.1.1.1"]), &trusted)),
            "203.0.113.9"
        );
        // Garbage or nothing: the proxy itself.
        assert_eq!(
            ip(client_of(proxy, &headers(&["nope"]), &trusted)),
            "127.0.0.1"
        );
        assert_eq!(ip(client_of(proxy, &headers(&[]), &trusted)), "127.0.0.1");
    }
}
