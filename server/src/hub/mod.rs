//! The realtime hub: Pusher protocol 7 over WebSockets on the app's own
//! port (`/app/{key}`), so pusher-js and Laravel Echo work unchanged, fed
//! by the channel log (docs/realtime.md; the protocol's corners in
//! docs/pusher-protocol.md).
//!
//! - [`protocol`]: frames and codes;
//! - [`keys`]: the app's id, key and secret, channel-auth signatures;
//! - [`registry`]: the one owner of subscription state, fed by the core's
//!   `log_tail` and reading the log itself, resume by `seq` included;
//! - [`connection`]: one WebSocket;
//! - [`api`]: the Pusher HTTP API (publish, channel queries);
//! - [`webhooks`]: Pusher webhooks, batched and delivered through the
//!   outbox.
//!
//! `POST /broadcasting/auth` (`routes::broadcasting`) signs subscriptions
//! with the same keys.

pub mod api;
pub mod cluster_worker;
pub mod connection;
pub mod events;
pub mod keys;
pub mod protocol;
pub mod registry;
pub mod webhooks;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocketUpgrade},
        Path, State,
    },
    response::Response,
    routing::get,
    Router,
};
use lockstep_core::Services;

pub use keys::AppKeys;
use registry::Registry;

/// The hub's bounds (Pusher's defaults).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest inbound frame, bytes.
    pub max_payload: usize,
    pub max_channels: usize,
    pub max_channel_name: usize,
    pub max_connections: usize,
    /// Frames queued for one connection before it counts as too slow.
    pub queue: usize,
    /// The `activity_timeout` told to clients (seconds).
    pub activity_timeout_secs: u64,
    pub max_event_name: usize,
    /// Distinct users on one presence channel.
    pub max_presence_members: usize,
    /// Bytes of one member's `user_info`.
    pub max_presence_member_size: usize,
    /// Inbound messages (pings aside) one connection may send per
    /// `rate_window`; 0 = no limit.
    pub rate_limit: u32,
    pub rate_window: std::time::Duration,
    /// Whether `client-…` events are relayed (Pusher's "client events").
    pub client_events: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload: 10 * 1024,
            max_channels: 100,
            max_channel_name: 164,
            max_connections: 10_000,
            queue: 1024,
            activity_timeout_secs: protocol::ACTIVITY_TIMEOUT_SECS,
            max_event_name: 200,
            max_presence_members: 100,
            max_presence_member_size: 1024,
            rate_limit: 30,
            rate_window: std::time::Duration::from_secs(10),
            client_events: false,
        }
    }
}

/// A running hub.
#[derive(Clone)]
pub struct Hub {
    pub keys: Arc<AppKeys>,
    pub limits: Arc<Limits>,
    pub(crate) registry: Registry,
    connections: Arc<AtomicUsize>,
    /// True once the server is shutting down: every connection is closed
    /// with 4200, so clients come straight back to another process.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Hub {
    /// Starts the registry on the current runtime; `events` receives
    /// what webhooks report (channel occupancy, members, client events).
    pub fn start(
        services: Services,
        keys: Arc<AppKeys>,
        limits: Limits,
        events: Option<tokio::sync::mpsc::UnboundedSender<registry::HubEvent>>,
        cluster: Option<(
            Arc<registry::ClusterLink>,
            tokio::sync::mpsc::UnboundedReceiver<crate::cluster::Inbound>,
        )>,
    ) -> Hub {
        let config = registry::Config {
            max_presence_members: limits.max_presence_members,
        };
        Hub {
            keys,
            limits: Arc::new(limits),
            registry: registry::start(services, config, events, cluster),
            connections: Arc::default(),
            closing: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Closes every connection with 4200 (reconnect now) and refuses new
    /// ones the same way.
    pub fn shut_down(&self) {
        let _ = self.closing.send(true);
    }

    /// Clustered: waits until this node's presence changes so far are
    /// written and announced (at shutdown).
    pub async fn presence_settled(&self) {
        self.registry.presence_settled().await
    }

    /// Announces what this node's last sweep removed.
    pub async fn announce_gone(&self, swept: crate::cluster::Swept) {
        self.registry.announce(swept).await
    }

    fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

/// `GET /app/{key}` (the WebSocket endpoint) and the Pusher HTTP API
/// under `/apps/{app_id}/`.
pub fn routes(hub: Hub) -> Router {
    Router::new()
        .route("/app/{key}", get(upgrade))
        .route("/apps/{app_id}/events", axum::routing::post(api::events))
        .route(
            "/apps/{app_id}/batch_events",
            axum::routing::post(api::batch_events),
        )
        .route("/apps/{app_id}/channels", get(api::channels))
        .route("/apps/{app_id}/channels/{name}", get(api::channel))
        .route("/apps/{app_id}/channels/{name}/users", get(api::users))
        .with_state(hub)
}

async fn upgrade(
    State(hub): State<Hub>,
    Path(key): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    // Small buffers, not tungstenite's 128 KiB defaults: the read buffer
    // is allocated up front for every connection and zeroed on every read
    // attempt; it grows for a larger frame (up to the 10 KB payload limit)
    // only when one comes (client frames are small); writes go out every
    // 4 KiB, so a burst does not leave a large
    // write buffer behind (measured in docs/benchmarks.md, hubload).
    let ws = ws
        .read_buffer_size(1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(hub.limits.max_payload * 2)
        .max_frame_size(hub.limits.max_payload * 2);
    if !keys::constant_time_eq(key.as_bytes(), hub.keys.key.as_bytes()) {
        crate::metrics::count_rejection("hub_unknown_app");
        return ws.on_upgrade(|socket| {
            refuse(
                socket,
                protocol::code::APP_NOT_FOUND,
                "Application does not exist",
            )
        });
    }
    if *hub.closing.borrow() {
        return ws.on_upgrade(|socket| {
            refuse(socket, protocol::code::RECONNECT, "Server shutting down")
        });
    }
    let taken = hub.connections.fetch_add(1, Ordering::SeqCst);
    // Given back when the connection ends, or when the upgrade never
    // happens (the callback is then dropped unrun).
    let slot = Slot(hub.connections.clone());
    if taken >= hub.limits.max_connections {
        drop(slot);
        crate::metrics::count_rejection("hub_over_capacity");
        return ws
            .on_upgrade(|socket| refuse(socket, protocol::code::OVER_CAPACITY, "Over capacity"));
    }
    ws.on_upgrade(move |socket| async move {
        let _slot = slot;
        connection::serve(socket, hub).await;
    })
}

/// One taken connection slot.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sends the error, then closes with its code.
async fn refuse(mut socket: axum::extract::ws::WebSocket, code: u16, message: &'static str) {
    let _ = socket
        .send(Message::Text(protocol::error(code, message).into()))
        .await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: message.into(),
        })))
        .await;
}
