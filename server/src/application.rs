//! Building and running the server: open the database, create the first
//! admin, assemble the router (health, metrics, `/api/v1`, Leptos pages and
//! server functions) with its layers, bind, and serve until shut down.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use app::{auth::ssr::RejectionCounter, shell, App};
use axum::{extract::Request, http::StatusCode, middleware, routing::get, Router};
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use lockstep_core::{
    db::{ensure_data_dir, ConnectError, Db},
    identity::session_store::DbSessionStore,
    workers, CoreError, Services,
};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tower_http::{
    compression::CompressionLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    services::ServeDir,
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};
use tower_sessions::{
    cookie::SameSite, session_store::ExpiredDeletion, Expiry, SessionManagerLayer,
};

use crate::{
    bootstrap::{ensure_admin, AdminBootstrap},
    caching, cluster,
    config::HttpLimits,
    config::{MqttMode, Secret, ServeConfig},
    guards, hub,
    metrics::{self, count_rejection},
    mqtt,
    routes::{self, api, health},
    security, serve,
    state::AppState,
};

/// Why the server could not start, in words for the person starting it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] ConnectError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("cannot create the first admin account: {0}")]
    Bootstrap(CoreError),
    #[error("{0}")]
    Mqtt(String),
    #[error("cannot load the realtime hub's app keys: {0}")]
    Hub(CoreError),
    #[error(transparent)]
    Refused(#[from] cluster::guard::Refused),
    #[error(transparent)]
    Nats(#[from] cluster::bus::BusError),
    #[error("cannot register this node: {0}")]
    Node(CoreError),
}

/// What a clustered node holds besides the hub.
struct Clustered {
    node: cluster::NodeInfo,
    bus: cluster::bus::Bus,
    timing: cluster::lease::Timing,
    inbound: tokio::sync::mpsc::UnboundedSender<cluster::Inbound>,
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    services: Services,
    mqtt: Option<mqtt::Connection>,
    limits: serve::Limits,
    /// The in-process broker, when one was started.
    pub embedded_broker: Option<mqtt::embedded::EmbeddedBroker>,
    hub: hub::Hub,
    pub admin: AdminBootstrap,
    clustered: Option<Clustered>,
    webhooks: Option<hub::webhooks::Batcher>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    drain_delay: Duration,
    /// Held for the process's life: the SQLite file's serve lock, or the
    /// PostgreSQL nodes' lock.
    _sqlite_lock: Option<cluster::guard::SqliteLock>,
    _nodes_lock: Option<lockstep_core::cluster::nodes::NodeLock>,
}

const SESSION_COOKIE: &str = "lockstep_session";

fn leptos_options(addr: SocketAddr) -> LeptosOptions {
    // `LEPTOS_OUTPUT_NAME` is baked in at build time (by cargo-leptos, or by
    // `.cargo/config.toml` for plain cargo builds); the rest has defaults
    // that `LEPTOS_*` environment variables override.
    let mut options = get_configuration(None)
        .map(|conf| conf.leptos_options)
        .unwrap_or_else(|_| LeptosOptions::builder().output_name("lockstep").build());
    options.site_addr = addr;
    // cargo-leptos (`hash-files = true`) names the assets by their content
    // and writes the names to hash.txt beside the binary: use them when
    // they are there (a plain `cargo build` has none).
    let hashes = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&*options.hash_file)));
    if hashes.is_some_and(|h| h.is_file()) {
        options.hash_files = true;
    }
    options
}

impl Application {
    pub async fn build(config: ServeConfig) -> Result<Self, StartError> {
        // First, so that start-up's own writes are counted too.
        let metrics_handle = metrics::handle();
        let (url, is_default) = config.storage.resolved_url();
        if is_default {
            ensure_data_dir(&config.storage.data_dir)?;
        }
        let nats_url = config.nats().map(str::to_string);
        if nats_url.is_some() {
            if url.starts_with("sqlite:") {
                return Err(cluster::guard::Refused::ClusterOnSqlite.into());
            }
            if config.mqtt().is_none() && config.mqtt == MqttMode::Embedded {
                return Err(cluster::guard::Refused::ClusterOnEmbeddedBroker.into());
            }
        }
        let sqlite_lock = cluster::guard::sqlite_single_process(&url)?;
        let db = Db::open(&url).await?;
        let nodes_lock = cluster::guard::postgres_nodes(&db, &url, nats_url.is_some()).await?;
        let timing = cluster::lease::Timing::for_lease(Duration::from_secs(
            config.node_lease_secs.clamp(1, 3600),
        ));
        if nats_url.is_some() && config.mqtt().is_some() {
            cluster::guard::unique_mqtt_client_id(&db, &config.mqtt_client_id, timing.lease)
                .await?;
        }
        let admin = ensure_admin(
            &db,
            &config.admin_email,
            config.admin_password.as_ref().map(Secret::expose),
        )
        .await
        .map_err(StartError::Bootstrap)?;

        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|e| StartError::Bind {
                addr: config.addr,
                reason: match e.kind() {
                    std::io::ErrorKind::AddrInUse => "the address is already in use; \
                        stop what holds it or choose another with --addr / LOCKSTEP_ADDR"
                        .to_string(),
                    std::io::ErrorKind::PermissionDenied => {
                        "permission denied (ports below 1024 need privileges)".to_string()
                    }
                    _ => e.to_string(),
                },
            })?;
        let local_addr = listener.local_addr().map_err(|e| StartError::Bind {
            addr: config.addr,
            reason: e.to_string(),
        })?;

        let mut services =
            Services::new(db.clone(), config.throttle()).with_settings(config.core());
        let mut embedded = None;
        let mqtt = match (
            config
                .mqtt_url
                .as_ref()
                .map(Secret::expose)
                .filter(|u| !u.trim().is_empty()),
            config.mqtt,
        ) {
            (Some(url), _) => {
                let mut mqtt_config =
                    mqtt::parse_url(url, &config.mqtt_client_id).map_err(StartError::Mqtt)?;
                mqtt_config.dynsec = config.mqtt_dynsec;
                let (gateway, connection) = mqtt::start(mqtt_config);
                services = services
                    .with_gateway(gateway)
                    .with_locker_broker_url(config.locker_mqtt_url.clone());
                Some(connection)
            }
            (None, MqttMode::Embedded) => {
                // The broker's login check needs the services; the gateway
                // is swapped in after, on the same shared state.
                let broker = mqtt::embedded::start(
                    config.mqtt_embedded_addr,
                    config.provisioning_password.expose().to_string(),
                    services.clone(),
                )
                .map_err(StartError::Mqtt)?;
                let mqtt_config = mqtt::MqttConfig {
                    host: broker.addr.ip().to_string(),
                    port: broker.addr.port(),
                    username: Some(mqtt::embedded::BRIDGE_USER.into()),
                    password: Some(broker.bridge_password.clone()),
                    client_id: config.mqtt_client_id.clone(),
                    ack_timeout: Duration::from_secs(10),
                    dynsec: false,
                    shared: false,
                    embedded: Some(broker.broker.clone()),
                };
                let (gateway, connection) = mqtt::start(mqtt_config);
                let url = config
                    .locker_mqtt_url
                    .clone()
                    .unwrap_or_else(|| format!("mqtt://{}", broker.addr));
                services = services
                    .with_gateway(gateway)
                    .with_locker_broker_url(Some(url));
                embedded = Some(broker);
                Some(connection)
            }
            (None, MqttMode::Off) => {
                tracing::warn!("MQTT off: open commands are recorded, not sent to lockers");
                None
            }
        };
        let keys = hub::AppKeys::load(
            &db,
            config.pusher_app_id.clone(),
            config.pusher_app_key.clone(),
            config
                .pusher_app_secret
                .as_ref()
                .map(|s| s.expose().to_string()),
        )
        .await
        .map_err(StartError::Hub)?;
        let keys = Arc::new(keys);
        let webhook_urls = config.webhook_urls();
        let webhooks = if webhook_urls.is_empty() {
            None
        } else {
            services =
                services.with_webhooks(Arc::new(hub::webhooks::HttpSender::new(keys.clone())));
            Some(hub::webhooks::start(services.clone(), webhook_urls))
        };
        let hub_events = webhooks.as_ref().map(|w| w.events.clone());
        let (clustered, hub_cluster) = match &nats_url {
            None => (None, None),
            Some(nats) => {
                let node = cluster::NodeInfo::new(
                    local_addr,
                    config.mqtt().map(|_| config.mqtt_client_id.clone()),
                );
                let (inbound, inbound_rx) = tokio::sync::mpsc::unbounded_channel();
                let bus = cluster::bus::Bus::connect(
                    nats,
                    &cluster::bus::prefix_for(&keys.app_id),
                    &format!("lockstep {}", node.name),
                    Duration::from_secs(10),
                    inbound.clone(),
                    services.log_tail.subscribe(),
                )
                .await?;
                cluster::lease::register(&db, &node, timing)
                    .await
                    .map_err(StartError::Node)?;
                tracing::info!(node = %node.name, node_id = %node.node_id, "joined the cluster");
                let link = Arc::new(hub::registry::ClusterLink {
                    node: node.clone(),
                    bus: bus.clone(),
                });
                (
                    Some(Clustered {
                        node,
                        bus,
                        timing,
                        inbound,
                    }),
                    Some((link, inbound_rx)),
                )
            }
        };
        let hub = hub::Hub::start(
            services.clone(),
            keys,
            hub::Limits {
                activity_timeout_secs: config.hub_activity_timeout_secs.max(1),
                queue: config.hub_queue.max(16),
                max_connections: config.hub_max_connections,
                rate_limit: config.hub_rate_limit,
                rate_window: std::time::Duration::from_secs(config.hub_rate_window_secs.max(1)),
                client_events: config.pusher_client_events,
                ..hub::Limits::default()
            },
            hub_events,
            hub_cluster,
        );
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let state = AppState {
            draining: draining.clone(),
            pusher: hub.keys.clone(),
            leptos_options: leptos_options(local_addr),
            services: services.clone(),
            metrics: metrics_handle,
            public_origin: guards::public_origin(config.public_url.as_deref()),
            metrics_token: config
                .metrics_token
                .clone()
                .filter(|t| !t.expose().trim().is_empty()),
        };
        let store = DbSessionStore::new(db);
        spawn_session_cleanup(store.clone());
        let sessions = SessionManagerLayer::new(store)
            .with_name(SESSION_COOKIE)
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(config.cookie_secure)
            .with_expiry(Expiry::OnInactivity(session_ttl(&config)));
        let router = router(state, hub.clone(), sessions, config.http_limits());
        Ok(Self {
            listener,
            router,
            services,
            mqtt,
            embedded_broker: embedded,
            hub,
            admin,
            limits: config.serve_limits(),
            clustered,
            webhooks,
            draining,
            drain_delay: Duration::from_secs(config.drain_delay_secs),
            _sqlite_lock: sqlite_lock,
            _nodes_lock: nodes_lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serves (and runs the outbox and timer workers) until `shutdown`
    /// completes, then lets open requests and the workers' round finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
        let (stop_bridge, bridge_stopped) = tokio::sync::watch::channel(false);
        let workers = workers::spawn_workers(self.services.clone(), workers_stopped);
        let bridge = self
            .mqtt
            .map(|c| tokio::spawn(c.run(self.services.clone(), bridge_stopped)));
        let upkeep = spawn_metrics_upkeep(crate::metrics::handle());
        let (stop_lease, lease_stopped) = tokio::sync::watch::channel(false);
        let lease = self.clustered.as_ref().map(|c| {
            tokio::spawn(cluster::lease::keep(
                self.services.db.clone(),
                c.node.clone(),
                c.timing,
                c.inbound.clone(),
                lease_stopped,
            ))
        });
        // Draining: `/readyz` fails first (a load balancer stops sending
        // new clients here), then, after the drain delay, WebSockets are
        // closed with 4200 (reconnect now, to another node) and the
        // accept loop stops; requests under way finish.
        let hub = self.hub.clone();
        let (draining, delay) = (self.draining.clone(), self.drain_delay);
        let shutdown = async move {
            shutdown.await;
            draining.store(true, std::sync::atomic::Ordering::SeqCst);
            if !delay.is_zero() {
                tracing::info!(
                    ?delay,
                    "draining: /readyz fails; closing after the drain delay"
                );
                tokio::time::sleep(delay).await;
            }
            hub.shut_down();
        };
        let served = serve::run(self.listener, self.router, self.limits, shutdown).await;
        // The workers first: sends under way still get their PUBACKs
        // through the bridge; then the bridge says goodbye to the broker.
        let _ = stop_workers.send(true);
        if let Err(e) = workers.await {
            tracing::error!(error = %e, "the workers ended abnormally");
        }
        let _ = stop_bridge.send(true);
        if let Some(bridge) = bridge {
            if let Err(e) = bridge.await {
                tracing::error!(error = %e, "the MQTT bridge ended abnormally");
            }
        }
        // Last, the node leaves the cluster: its presence members are
        // removed and announced before the process exits.
        if let (Some(c), Some(lease)) = (&self.clustered, lease) {
            self.hub.presence_settled().await;
            let _ = stop_lease.send(true);
            match lease.await {
                Ok(gone) => self.hub.announce_gone(gone).await,
                Err(e) => tracing::error!(error = %e, "the node's lease keeper ended abnormally"),
            }
            c.bus.flush(Duration::from_secs(2)).await;
        }
        // The webhook events decided so far (this node alone decided
        // them) are stored before the process exits: the outbox (any
        // node's, or this one's next start) delivers them.
        if let Some(webhooks) = &self.webhooks {
            self.hub.presence_settled().await;
            webhooks.flush().await;
        }
        upkeep.abort();
        served
    }
}

/// Drains the histograms' pending samples every few seconds: the
/// exporter otherwise keeps every sample until `/metrics` is scraped, so
/// an unscraped process grows without bound.
fn spawn_metrics_upkeep(handle: PrometheusHandle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    })
}

fn spawn_session_cleanup(store: DbSessionStore) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            if let Err(e) = store.delete_expired().await {
                tracing::warn!(error = %e, "deleting expired sessions failed");
            }
        }
    });
}

/// How long a session lives without being used.
fn session_ttl(config: &ServeConfig) -> time::Duration {
    time::Duration::hours(i64::from(config.session_hours.max(1)))
}

/// The whole HTTP surface.
pub fn router(
    state: AppState,
    hub: hub::Hub,
    sessions: SessionManagerLayer<DbSessionStore>,
    limits: HttpLimits,
) -> Router {
    let routes = generate_route_list(App);
    let context = {
        let services = state.services.clone();
        let counter = RejectionCounter(Arc::new(count_rejection));
        let pusher_key = app::realtime::PusherKey(state.pusher.key.clone());
        let refresh = app::realtime::table_sync::RefreshMs(limits.table_refresh_ms);
        move || {
            provide_context(services.clone());
            provide_context(counter.clone());
            provide_context(pusher_key.clone());
            provide_context(refresh);
        }
    };
    let pages = Router::new()
        .leptos_routes_with_context(&state, routes, context.clone(), {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, shell));

    // The site's assets: precompressed at build time (`cargo leptos build
    // --release --precompress` writes .br and .gz beside each), immutable
    // when their names are hashed.
    let site = std::path::PathBuf::from(&*state.leptos_options.site_root);
    let pkg_dir = state.leptos_options.site_pkg_dir.to_string();
    let pkg = tower::ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static(if state.leptos_options.hash_files {
                caching::IMMUTABLE
            } else {
                caching::SHORT
            }),
        ))
        .service(
            ServeDir::new(site.join(&pkg_dir))
                .precompressed_br()
                .precompressed_gzip(),
        );

    Router::new()
        .nest_service(&format!("/{pkg_dir}"), pkg)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        // The end-user app lives at /my: `/app/{key}` is the realtime
        // hub's WebSocket, as pusher-js and Echo expect it.
        .route(
            "/app",
            get(|| async { axum::response::Redirect::permanent("/my") }),
        )
        .route(
            "/broadcasting/auth",
            axum::routing::post(routes::broadcasting::broadcasting_auth),
        )
        .nest("/api/v1", api::router())
        .merge(pages)
        .layer(middleware::from_fn_with_state(state.clone(), guards::pages))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guards::same_origin,
        ))
        .layer(sessions)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(middleware::from_fn(security::headers))
        .layer(middleware::from_fn(caching::headers))
        // Dynamic answers (pages, JSON) compressed as the client accepts;
        // a precompressed asset (already encoded) passes through.
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn(metrics::track_requests))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!(
                "request",
                method = %req.method(),
                path = %req.uri().path(),
                request_id = %request_id,
            )
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
        // The WebSocket endpoint, outside the page guards and the request
        // timeout (a connection lives for hours).
        .merge(hub::routes(hub))
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested; finishing open requests");
}
