//! Three `lockstep serve` processes behind HAProxy, over one PostgreSQL
//! database, a NATS server and the repo's Mosquitto, every one of them
//! started by the test on free ports: the log, HTTP publishes, client
//! events and presence hold across nodes, and a SIGKILLed node's members
//! leave everyone's lists within the lease. Runs in the PostgreSQL pass
//! (`LOCKSTEP_TEST_DATABASE_URL`); SQLite is single-process by design.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use locker_sim::{provision, run, Behaviour, Stats};
use lockstep_core::{
    db::Db,
    eventstore::events::Actor,
    identity::{
        accounts::{self, NewUser, Role},
        caller::Caller,
        throttle::ThrottleConfig,
        tokens::{create_token, Abilities},
    },
    lockers::{self, NewBank, NewCompartment},
    testing::{fresh_database, TestDb},
    Services,
};
use lockstep_server::hub::AppKeys;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::{
    hub::Ws,
    mqtt::tempdir,
    provisioning::{free_port, identity, RepoBroker, BRIDGE_PASSWORD},
};

const APP_ID: &str = "cluster-app";
const APP_KEY: &str = "cluster-key";
const APP_SECRET: &str = "cluster-secret-0123456789abcdef";
/// Short, so the test waits seconds for a dead node: the sweep bound is
/// the lease plus one renewal (lease / 5).
const LEASE_SECS: u64 = 3;

/// One `lockstep serve` process.
pub(crate) struct Node {
    pub addr: SocketAddr,
    client_id: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGKILL: no drain, no goodbye; its lease simply runs out.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM; [`Node::wait`] collects the exit.
    pub fn terminate(&mut self) {
        let c = self.child.as_ref().expect("a running node");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
    }

    /// Waits for the process to end.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child
            .take()
            .expect("a node")
            .wait()
            .expect("the node ends")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) struct Cluster {
    pub nodes: Vec<Node>,
    /// HAProxy's address.
    pub lb: SocketAddr,
    pub services: Services,
    pub keys: AppKeys,
    pub broker: RepoBroker,
    _db: TestDb,
    env: Vec<(String, String)>,
    _nats: Proc,
    _haproxy: Proc,
    dir: tempdir::Dir,
}

/// Waits until `url` answers 200 (a process starting has no event to
/// await but its port).
async fn await_ok(url: &str, within: Duration, what: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().as_u16() == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not become ready at {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn await_port(port: u16, what: &str) {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} did not listen on {port}");
}

impl Cluster {
    /// None (the test is skipped) without PostgreSQL.
    pub async fn start(nodes: usize) -> Option<Cluster> {
        Self::start_with(nodes, &[]).await
    }

    /// The same, with settings of the test's own.
    pub async fn start_with(nodes: usize, extra: &[(&str, &str)]) -> Option<Cluster> {
        if !std::env::var("LOCKSTEP_TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres")) {
            eprintln!("skipped: the cluster needs PostgreSQL (LOCKSTEP_TEST_DATABASE_URL; .ci/run sets it)");
            return None;
        }
        let db = fresh_database().await;
        let dir =
            std::env::temp_dir().join(format!("lockstep-cluster-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let broker = RepoBroker::start().await;
        let nats_port = free_port();
        let nats = Proc(
            Command::new("nats-server")
                .args(["-a", "127.0.0.1", "-p", &nats_port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server is installed"),
        );
        await_port(nats_port, "nats-server").await;
        let env: Vec<(String, String)> = [
            ("DATABASE_URL", db.url.clone()),
            ("NATS_URL", format!("nats://127.0.0.1:{nats_port}")),
            (
                "MQTT_URL",
                format!(
                    "mqtt://lockstep:{BRIDGE_PASSWORD}@127.0.0.1:{}",
                    broker.dynsec_port
                ),
            ),
            ("LOCKSTEP_PUSHER_APP_ID", APP_ID.into()),
            ("LOCKSTEP_PUSHER_APP_KEY", APP_KEY.into()),
            ("LOCKSTEP_PUSHER_APP_SECRET", APP_SECRET.into()),
            ("LOCKSTEP_ADMIN_EMAIL", "admin@cluster.test".into()),
            ("LOCKSTEP_ADMIN_PASSWORD", "cluster-admin-password".into()),
            ("LOCKSTEP_NODE_LEASE_SECS", LEASE_SECS.to_string()),
            ("LOCKSTEP_DRAIN_DELAY_SECS", "0".into()),
            ("LOCKSTEP_OPEN_TIMEOUT_SECS", "15".into()),
            ("LOCKSTEP_PUSHER_CLIENT_EVENTS", "true".into()),
            ("LOCKSTEP_HUB_RATE_LIMIT", "0".into()),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
        let mut cluster_nodes: Vec<Node> = (0..nodes)
            .map(|i| Node {
                addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                client_id: format!("lockstep-node-{i}"),
                log: dir.join(format!("node-{i}.log")),
                child: None,
            })
            .collect();
        // The first alone (it migrates and makes the admin), then the rest.
        spawn_node(&env, &mut cluster_nodes[0]);
        await_ok(
            &cluster_nodes[0].url("/readyz"),
            Duration::from_secs(60),
            "node 0",
        )
        .await;
        for n in cluster_nodes.iter_mut().skip(1) {
            spawn_node(&env, n);
        }
        for (i, n) in cluster_nodes.iter().enumerate() {
            await_ok(
                &n.url("/readyz"),
                Duration::from_secs(60),
                &format!("node {i}"),
            )
            .await;
        }
        let lb_port = free_port();
        let cfg = dir.join("haproxy.cfg");
        let mut render = Command::new("bash");
        render
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../deploy/haproxy/render"
            ))
            .arg(&cfg)
            .arg(format!("127.0.0.1:{lb_port}"));
        for n in &cluster_nodes {
            render.arg(n.addr.to_string());
        }
        let out = render.output().expect("render runs");
        assert!(
            out.status.success(),
            "render: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let haproxy = Proc(
            Command::new("haproxy")
                .args(["-db", "-f"])
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("haproxy is installed (.ci/setup)"),
        );
        let lb = SocketAddr::from(([127, 0, 0, 1], lb_port));
        await_ok(
            &format!("http://{lb}/readyz"),
            Duration::from_secs(20),
            "haproxy",
        )
        .await;
        sqlx::any::install_default_drivers();
        let services = Services::new(
            Db::connect(&db.url).await.expect("db"),
            ThrottleConfig::default(),
        );
        let keys = AppKeys::load(
            &services.db,
            Some(APP_ID.into()),
            Some(APP_KEY.into()),
            Some(APP_SECRET.into()),
        )
        .await
        .expect("keys");
        Some(Cluster {
            nodes: cluster_nodes,
            lb,
            services,
            keys,
            broker,
            _db: db,
            env,
            _nats: nats,
            _haproxy: haproxy,
            dir: tempdir::Dir(dir),
        })
    }

    /// Starts node `i` again (same port and client id; a new node id).
    pub async fn restart(&mut self, i: usize) {
        spawn_node(&self.env, &mut self.nodes[i]);
        await_ok(
            &self.nodes[i].url("/readyz"),
            Duration::from_secs(60),
            "restarted node",
        )
        .await;
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("---- node {i}\n{}", n.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub async fn admin(&self) -> Caller {
        let u = accounts::find_user_by_email(&self.services.db, "admin@cluster.test")
            .await
            .expect("q")
            .expect("admin");
        Caller::new(u.clone(), Actor::User { id: u.id })
    }

    /// A user of the default tenant and a bearer token of theirs.
    pub async fn user(&self, email: &str) -> (accounts::User, String) {
        let user = accounts::add_user(
            &self.services.db,
            NewUser {
                email: email.into(),
                name: Some(email.into()),
                role: Role::User,
                tenant_name: "Default".into(),
                password: "cluster-user-password".into(),
            },
        )
        .await
        .expect("user");
        let token = create_token(
            &self.services.db,
            email,
            "cluster test",
            &Abilities::parse_list("*").expect("abilities"),
        )
        .await
        .expect("token")
        .secret;
        (user, token)
    }

    /// A signed Pusher HTTP API request to `addr`.
    pub fn signed(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> String {
        use md5::{Digest, Md5};
        let mut params: Vec<(String, String)> = vec![
            ("auth_key".into(), self.keys.key.clone()),
            (
                "auth_timestamp".into(),
                (lockstep_core::now_ms() / 1000).to_string(),
            ),
            ("auth_version".into(), "1.0".into()),
        ];
        if !body.is_empty() {
            params.push(("body_md5".into(), hex::encode(Md5::digest(body))));
        }
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        params.sort();
        let qs = params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let signature = self.keys.sign(&format!("{method}\n{path}\n{qs}"));
        format!("http://{addr}{path}?{qs}&auth_signature={signature}")
    }

    /// `POST /apps/{id}/events` on `addr`.
    pub async fn publish(
        &self,
        addr: SocketAddr,
        channel: &str,
        event: &str,
        data: &str,
        except: Option<&str>,
    ) {
        let mut body = json!({"name": event, "channel": channel, "data": data});
        if let Some(s) = except {
            body["socket_id"] = json!(s);
        }
        let body = body.to_string();
        let path = format!("/apps/{APP_ID}/events");
        let res = reqwest::Client::new()
            .post(self.signed(addr, "POST", &path, &body, &[]))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("publish");
        assert_eq!(
            res.status().as_u16(),
            200,
            "{}",
            res.text().await.unwrap_or_default()
        );
    }

    /// A signed GET of the Pusher HTTP API on `addr`.
    pub async fn api_get(&self, addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Value {
        let res = reqwest::get(self.signed(addr, "GET", path, "", extra))
            .await
            .expect("get");
        assert_eq!(res.status().as_u16(), 200);
        res.json().await.expect("json")
    }
}

fn spawn_node(env: &[(String, String)], node: &mut Node) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .expect("log file");
    let data = node.log.with_extension("data");
    std::fs::create_dir_all(&data).expect("data dir");
    node.child = Some(
        Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("LOCKSTEP_ADDR", node.addr.to_string())
            .env("MQTT_CLIENT_ID", &node.client_id)
            .env("LOCKSTEP_DATA_DIR", &data)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the lockstep binary starts"),
    );
}

/// A Pusher protocol 7 client, as pusher-js connects.
pub(crate) struct Client {
    pub ws: Ws,
    pub socket_id: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let url =
            format!("ws://{addr}/app/{APP_KEY}?protocol=7&client=js&version=8.4.0&flash=false");
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade");
        let hello = next(&mut ws).await;
        assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
        let data: Value =
            serde_json::from_str(hello["data"].as_str().expect("data")).expect("json");
        Client {
            ws,
            socket_id: data["socket_id"].as_str().expect("socket_id").to_string(),
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn next(&mut self) -> Value {
        next(&mut self.ws).await
    }

    /// The next frame that is not a ping or pong.
    pub async fn next_event(&mut self) -> Value {
        loop {
            let f = self.next().await;
            if !matches!(f["event"].as_str(), Some("pusher:ping" | "pusher:pong")) {
                return f;
            }
        }
    }

    /// Subscribes to a public channel.
    pub async fn subscribe(&mut self, channel: &str) {
        self.send(json!({"event": "pusher:subscribe", "data": {"channel": channel}}))
            .await;
        let ok = self.next_event().await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
    }

    /// Joins a presence channel as `user_id`; the members it was told.
    pub async fn join(&mut self, keys: &AppKeys, channel: &str, user_id: &str) -> Value {
        let channel_data =
            json!({"user_id": user_id, "user_info": {"name": format!("N{user_id}")}}).to_string();
        let auth = keys.channel_auth(&self.socket_id, channel, Some(&channel_data));
        self.send(json!({"event": "pusher:subscribe",
                    "data": {"channel": channel, "auth": auth, "channel_data": channel_data}}))
            .await;
        let ok = self.next_event().await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
        serde_json::from_str(ok["data"].as_str().expect("data")).expect("json")
    }
}

async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("json frame");
        }
    }
}

/// Publishes a marker on `channel` through `at` and reads each client up
/// to it: what each got before the marker, in order (pings aside).
async fn until_marker(
    c: &Cluster,
    at: SocketAddr,
    channel: &str,
    clients: &mut [&mut Client],
) -> Vec<Vec<Value>> {
    let marker = Uuid::now_v7().to_string();
    c.publish(at, channel, "marker", &marker, None).await;
    let mut seen = Vec::new();
    for client in clients.iter_mut() {
        let mut before = Vec::new();
        loop {
            let f = client.next_event().await;
            if f["event"] == "marker" && f["data"] == marker.as_str() {
                break;
            }
            before.push(f);
        }
        seen.push(before);
    }
    seen
}

#[tokio::test]
async fn three_nodes_behind_haproxy_share_the_log_publishes_and_exclusions() {
    let Some(c) = Cluster::start(3).await else {
        return;
    };
    let admin = c.admin().await;
    let (user, token) = c.user("cluster-user@lockstep.test").await;
    let bank = lockers::register_bank(
        &c.services,
        &admin,
        NewBank {
            serial: "CLUSTER-1".into(),
            name: "Cluster".into(),
            location: None,
            compartments: (1..=2)
                .map(|n| NewCompartment {
                    number: n,
                    size: "small".into(),
                    label: None,
                })
                .collect(),
        },
    )
    .await
    .expect("bank");
    let compartment = bank.compartments[0].id;
    lockers::grant_access(
        &c.services,
        &admin,
        compartment,
        "cluster-user@lockstep.test",
        None,
        None,
    )
    .await
    .expect("grant");
    // A real locker, provisioned through whichever node the shared
    // subscription hands its registration to.
    let creds = provision(
        &c.broker.provisioning(),
        &identity("CLUSTER-1"),
        Duration::from_secs(30),
    )
    .await
    .expect("the locker provisions");
    let stats = Arc::new(Stats::default());
    let mut locker = run(
        &c.broker.lockers(),
        creds,
        Behaviour {
            heartbeat: Duration::from_secs(2),
            ..Behaviour::default()
        },
        stats.clone(),
    );
    locker
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("locker up");
    let online = async {
        loop {
            let b = lockers::get_bank(&c.services, admin.user.tenant_id, bank.id)
                .await
                .expect("q")
                .expect("bank");
            if b.online == Some(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), online)
        .await
        .expect("the bank comes online");

    // Two clients on each node, two more through HAProxy; all follow the
    // user's channel (signed by whichever node HAProxy picks).
    let channel = format!("private-user.{}", user.id);
    let mut addrs: Vec<SocketAddr> = c.nodes.iter().flat_map(|n| [n.addr, n.addr]).collect();
    addrs.extend([c.lb, c.lb]);
    let mut clients = Vec::new();
    for addr in &addrs {
        let mut client = Client::connect(*addr).await;
        let res = reqwest::Client::new()
            .post(format!("http://{}/broadcasting/auth", c.lb))
            .bearer_auth(&token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "socket_id={}&channel_name={channel}",
                client.socket_id
            ))
            .send()
            .await
            .expect("auth");
        assert_eq!(res.status().as_u16(), 200);
        let auth: Value = res.json().await.expect("auth json");
        client
            .send(json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth["auth"]}}))
            .await;
        let ok = client.next_event().await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
        clients.push(client);
    }

    // The open, asked of node 2 (C).
    let res = reqwest::Client::new()
        .post(c.nodes[2].url(&format!("/api/v1/compartments/{compartment}/open")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("open");
    assert_eq!(res.status().as_u16(), 202);
    let decision: Value = res.json().await.expect("decision");
    let command_id = decision["command_id"]
        .as_str()
        .expect("command_id")
        .to_string();

    // Every client, wherever it is, gets the command's statuses up to
    // `opened`, each once, with the same seq everywhere.
    let mut seqs: Vec<Vec<(String, i64)>> = Vec::new();
    for client in clients.iter_mut() {
        let mut got = Vec::new();
        loop {
            let f = client.next_event().await;
            let Some(data) = f["data"].as_str() else {
                continue;
            };
            let e: Value = serde_json::from_str(data).expect("envelope");
            if e["data"]["command_id"] != command_id.as_str() {
                continue;
            }
            let status = e["data"]["status"].as_str().unwrap_or("").to_string();
            got.push((status.clone(), e["seq"].as_i64().expect("seq")));
            if status == "opened" || status == "failed" {
                break;
            }
        }
        seqs.push(got);
    }
    // `sent` (the PUBACK, recorded by the node that sent it) may lose the
    // race to the locker's result (handled by whichever node the shared
    // subscription picks): then the log skips it, for everyone alike.
    let first = seqs[0].clone();
    let statuses: Vec<&str> = first.iter().map(|(s, _)| s.as_str()).collect();
    assert!(
        statuses == ["accepted", "sent", "opened"] || statuses == ["accepted", "opened"],
        "{first:?}"
    );
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(
            s, &first,
            "client {i} (on {}) saw another lifecycle",
            addrs[i]
        );
    }
    // Nothing more for the command afterwards (no duplicate): a marker
    // published to a public channel they all follow comes next.
    let public = "cluster-public";
    for client in clients.iter_mut() {
        client.subscribe(public).await;
    }
    {
        let mut refs: Vec<&mut Client> = clients.iter_mut().collect();
        for (i, before) in until_marker(&c, c.nodes[1].addr, public, &mut refs)
            .await
            .iter()
            .enumerate()
        {
            assert!(before.is_empty(), "client {i} got more: {before:?}");
        }
    }
    assert_eq!(
        stats.opened.lock().expect("stats").len(),
        1,
        "the locker opened once"
    );

    // An HTTP API publish to node C reaches the subscribers on A and B,
    // but the socket it names (on A).
    let spared = clients[0].socket_id.clone();
    c.publish(c.nodes[2].addr, public, "news", "\"hello\"", Some(&spared))
        .await;
    let mut refs: Vec<&mut Client> = clients.iter_mut().collect();
    let seen = until_marker(&c, c.nodes[2].addr, public, &mut refs).await;
    for (i, before) in seen.iter().enumerate() {
        let news: Vec<&Value> = before.iter().filter(|f| f["event"] == "news").collect();
        if i == 0 {
            assert!(news.is_empty(), "the excluded socket got {news:?}");
        } else {
            assert_eq!(news.len(), 1, "client {i} (on {}) got {before:?}", addrs[i]);
        }
    }
    // A client event on node A reaches a private channel's subscribers on
    // B and C, never the sender.
    let room = "private-room.cluster";
    for client in clients.iter_mut().take(6) {
        let auth = c.keys.channel_auth(&client.socket_id, room, None);
        client
            .send(json!({"event": "pusher:subscribe", "data": {"channel": room, "auth": auth}}))
            .await;
        let ok = client.next_event().await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
    }
    clients[0]
        .send(json!({"event": "client-typing", "channel": room, "data": {"who": "a"}}))
        .await;
    // Each of the others gets it; the sender (a marker after) does not.
    for client in clients.iter_mut().take(6).skip(1) {
        let f = client.next_event().await;
        assert_eq!(
            (f["event"].as_str(), f["channel"].as_str()),
            (Some("client-typing"), Some(room)),
            "{f}"
        );
    }
    let mut sender: Vec<&mut Client> = clients.iter_mut().take(1).collect();
    let seen = until_marker(&c, c.nodes[0].addr, room, &mut sender).await;
    assert!(
        seen[0].is_empty(),
        "the sender got its own client event back: {:?}",
        seen[0]
    );
    locker.stop();
    let _ = c.logs();
}

/// Applies member events to a client's view of a presence channel as
/// pusher-js does; a `member_added` of someone already there is a bug.
fn apply_members(view: &mut HashSet<String>, frames: &[Value]) {
    for f in frames {
        let d: Value =
            serde_json::from_str(f["data"].as_str().unwrap_or("{}")).unwrap_or(Value::Null);
        let user = d["user_id"].as_str().unwrap_or("").to_string();
        match f["event"].as_str() {
            Some("pusher_internal:member_added") => {
                assert!(view.insert(user.clone()), "{user} added twice: {frames:?}");
            }
            Some("pusher_internal:member_removed") => {
                view.remove(&user);
            }
            _ => {}
        }
    }
}

/// Distinct user ids on a presence channel, as the HTTP API of `addr`
/// tells them.
async fn users_at(c: &Cluster, addr: SocketAddr, channel: &str) -> HashSet<String> {
    let v = c
        .api_get(
            addr,
            &format!("/apps/{APP_ID}/channels/{channel}/users"),
            &[],
        )
        .await;
    v["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn presence_is_one_list_across_nodes_and_a_killed_nodes_members_leave() {
    let Some(mut c) = Cluster::start(3).await else {
        return;
    };
    let channel = "presence-room.cluster";
    let (a, b, cc) = (c.nodes[0].addr, c.nodes[1].addr, c.nodes[2].addr);
    let mut ann = Client::connect(a).await;
    let here = ann.join(&c.keys, channel, "ann").await;
    assert_eq!(here["presence"]["count"], 1);
    // Bob on B sees Ann (on A) in his list; Ann hears Bob come.
    let mut bob = Client::connect(b).await;
    let here = bob.join(&c.keys, channel, "bob").await;
    assert_eq!(here["presence"]["count"], 2, "{here}");
    assert!(here["presence"]["hash"]["ann"].is_object(), "{here}");
    let added = ann.next_event().await;
    assert_eq!(added["event"], "pusher_internal:member_added", "{added}");
    assert_eq!(
        serde_json::from_str::<Value>(added["data"].as_str().expect("data")).expect("json")
            ["user_id"],
        "bob"
    );
    // Bob's second tab, on C: nobody comes; closing it: nobody goes.
    let mut bob2 = Client::connect(cc).await;
    assert_eq!(
        bob2.join(&c.keys, channel, "bob").await["presence"]["count"],
        2
    );
    bob2.send(json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
        .await;
    drop(bob2);
    let seen = until_marker(&c, cc, channel, &mut [&mut ann]).await;
    assert!(seen[0].is_empty(), "Ann heard {:?}", seen[0]);
    // Every node answers the same list and count.
    for addr in [a, b, cc, c.lb] {
        assert_eq!(
            users_at(&c, addr, channel).await,
            HashSet::from(["ann".to_string(), "bob".to_string()])
        );
        let info = c
            .api_get(
                addr,
                &format!("/apps/{APP_ID}/channels/{channel}"),
                &[("info", "user_count,subscription_count")],
            )
            .await;
        assert_eq!(info["user_count"], 2, "{info}");
        assert_eq!(info["subscription_count"], 2, "{info}");
    }

    // Bob's node is killed outright: Ann hears him leave within the lease
    // and one renewal (and a second's slack for the sweep itself).
    let killed = Instant::now();
    c.nodes[1].kill();
    let removed = ann.next_event().await;
    let took = killed.elapsed();
    assert_eq!(
        removed["event"], "pusher_internal:member_removed",
        "{removed}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(removed["data"].as_str().expect("data")).expect("json")
            ["user_id"],
        "bob"
    );
    // The slack is for a machine loaded by the whole suite (the sweep
    // itself, HAProxy, NATS); a sweep that never ran would not come at all.
    let bound = Duration::from_secs(LEASE_SECS)
        + Duration::from_secs(LEASE_SECS) / 5
        + Duration::from_secs(5);
    assert!(
        took <= bound,
        "member_removed came {took:?} after the kill (bound {bound:?}):\n{}",
        c.logs()
    );
    drop(bob);
    for addr in [a, cc] {
        assert_eq!(
            users_at(&c, addr, channel).await,
            HashSet::from(["ann".to_string()])
        );
    }
    // Once, not once per node: nothing more for Ann.
    let seen = until_marker(&c, a, channel, &mut [&mut ann]).await;
    assert!(seen[0].is_empty(), "Ann heard {:?}", seen[0]);

    // Dee (on C) subscribes, unsubscribes and subscribes again without
    // waiting for an answer, as Echo's leave-then-join does: Ann hears
    // her come once, and go once when she leaves.
    let mut dee = Client::connect(cc).await;
    let dee_data = json!({"user_id": "dee", "user_info": {"name": "Ndee"}}).to_string();
    let dee_auth = c
        .keys
        .channel_auth(&dee.socket_id, channel, Some(&dee_data));
    let subscribe = json!({"event": "pusher:subscribe",
        "data": {"channel": channel, "auth": dee_auth, "channel_data": dee_data}});
    dee.send(subscribe.clone()).await;
    dee.send(json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
        .await;
    dee.send(subscribe).await;
    // Dee hears one or two successes (two when C's worker answered the
    // first subscribe before C read the unsubscribe), so the test waits
    // on something ordered after all three instead: Dee's join of a
    // second presence channel goes to C's worker after her three ops,
    // and the worker answers in order, so once it succeeds every
    // announcement about her on `channel` has left C.
    let sync = format!("{channel}.sync");
    let sync_auth = c.keys.channel_auth(&dee.socket_id, &sync, Some(&dee_data));
    dee.send(json!({"event": "pusher:subscribe",
        "data": {"channel": sync, "auth": sync_auth, "channel_data": dee_data}}))
        .await;
    loop {
        let f = dee.next_event().await;
        if f["event"] == "pusher_internal:subscription_succeeded" && f["channel"] == sync.as_str() {
            break;
        }
    }
    // (The marker goes through C: frames from one node arrive in order.
    // A removal of someone Ann never had is ignored, as pusher-js does.)
    let mut view: HashSet<String> = HashSet::from(["ann".to_string()]);
    let heard = until_marker(&c, cc, channel, &mut [&mut ann])
        .await
        .remove(0);
    apply_members(&mut view, &heard);
    assert_eq!(
        view,
        HashSet::from(["ann".to_string(), "dee".to_string()]),
        "{heard:?}"
    );
    let _ = dee.ws.close(None).await;
    drop(dee);
    let gone = async {
        let mut heard = Vec::new();
        while view.contains("dee") {
            let f = ann.next_event().await;
            apply_members(&mut view, std::slice::from_ref(&f));
            heard.push(f);
        }
        heard
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("Dee leaves Ann's view");
    let heard = until_marker(&c, cc, channel, &mut [&mut ann])
        .await
        .remove(0);
    assert!(heard.is_empty(), "Ann heard {heard:?}");

    // The node comes back (a new node id); churn: connections of five
    // users opened and closed at random on random nodes, some closed
    // cleanly, some dropped; afterwards only Ann is there, on every node.
    c.restart(1).await;
    let addrs = [a, b, cc];
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: usize| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        (rng_state % n as u64) as usize
    };
    let mut open: Vec<(String, Client)> = Vec::new();
    for _ in 0..100 {
        if open.is_empty() || rand(3) > 0 {
            let user = format!("u{}", rand(5));
            let mut client = Client::connect(addrs[rand(3)]).await;
            client.join(&c.keys, channel, &user).await;
            open.push((user, client));
        } else {
            let (_, mut client) = open.swap_remove(rand(open.len()));
            if rand(2) == 0 {
                let _ = client.ws.close(None).await;
            }
            drop(client);
        }
    }
    // The users left standing, then all of them go.
    let standing: HashSet<String> = open.iter().map(|(u, _)| u.clone()).collect();
    let mut expected = standing.clone();
    expected.insert("ann".into());
    let settled = async {
        loop {
            if users_at(&c, a, channel).await == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), settled)
        .await
        .unwrap_or_else(|_| panic!("the list never became {expected:?}"));
    open.clear();
    let only_ann = HashSet::from(["ann".to_string()]);
    let settled = async {
        loop {
            let mut all = true;
            for addr in addrs {
                all &= users_at(&c, addr, channel).await == only_ann;
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), settled)
        .await
        .unwrap_or_else(|_| panic!("ghosts remain:\n{}", c.logs()));
    // What Ann heard adds up, as pusher-js applies it: nobody added
    // twice, and only she is left (a marker through each node, so every
    // node's frames have arrived).
    let mut view: HashSet<String> = HashSet::from(["ann".to_string()]);
    for addr in addrs {
        let heard = until_marker(&c, addr, channel, &mut [&mut ann])
            .await
            .remove(0);
        apply_members(&mut view, &heard);
    }
    assert_eq!(view, only_ann, "Ann's view is off");
    // And the table holds Ann's one row.
    let rows = lockstep_core::cluster::presence::members(&c.services.db, channel)
        .await
        .expect("members");
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn a_second_node_without_nats_or_with_a_taken_client_id_is_refused() {
    let Some(c) = Cluster::start(1).await else {
        return;
    };
    let run = |env: Vec<(&str, String)>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockstep"));
        cmd.arg("serve")
            .envs(c.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("LOCKSTEP_ADDR", "127.0.0.1:0")
            .env("LOCKSTEP_DATA_DIR", c.dir.0.join("refused"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("runs")
    };
    let out = run(vec![
        ("NATS_URL", String::new()),
        ("MQTT_CLIENT_ID", "other-id".into()),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set NATS_URL on every node"), "{err}");
    let out = run(vec![("MQTT_CLIENT_ID", c.nodes[0].client_id.clone())]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already uses the MQTT client id"), "{err}");
}

/// A pusher-js-like follower of one log channel through `at`: it
/// reconnects whenever its socket drops and resumes from the last seq it
/// had. Records every seq it got, in order.
struct Follower {
    seqs: Arc<std::sync::Mutex<Vec<i64>>>,
    reconnects: Arc<std::sync::atomic::AtomicU64>,
    /// Subscriptions that succeeded.
    subscribed: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Follower {
    fn start(at: SocketAddr, channel: String, token: String) -> Follower {
        let seqs: Arc<std::sync::Mutex<Vec<i64>>> = Arc::default();
        let reconnects: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let subscribed: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let (s, r, ok) = (seqs.clone(), reconnects.clone(), subscribed.clone());
        let task = tokio::spawn(async move {
            let mut first = true;
            loop {
                if !first {
                    r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                first = false;
                let _ = follow_once(at, &channel, &token, &s, &ok).await;
            }
        });
        Follower {
            seqs,
            reconnects,
            subscribed,
            task,
        }
    }

    fn last(&self) -> i64 {
        self.seqs.lock().expect("seqs").last().copied().unwrap_or(0)
    }
}

/// One connection's life: subscribe (resuming after the last seq), then
/// read until the socket fails.
async fn follow_once(
    at: SocketAddr,
    channel: &str,
    token: &str,
    seqs: &std::sync::Mutex<Vec<i64>>,
    subscribed: &std::sync::atomic::AtomicU64,
) -> Result<(), String> {
    let url = format!("ws://{at}/app/{APP_KEY}?protocol=7&client=js&version=8.4.0&flash=false");
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| e.to_string())?;
    let hello = read(&mut ws).await?;
    let data: Value =
        serde_json::from_str(hello["data"].as_str().unwrap_or("{}")).map_err(|e| e.to_string())?;
    let socket_id = data["socket_id"]
        .as_str()
        .ok_or("no socket id")?
        .to_string();
    let res = reqwest::Client::new()
        .post(format!("http://{at}/broadcasting/auth"))
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("socket_id={socket_id}&channel_name={channel}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status().as_u16() != 200 {
        return Err(format!("auth {}", res.status()));
    }
    let auth: Value = res.json().await.map_err(|e| e.to_string())?;
    let last = seqs.lock().expect("seqs").last().copied();
    let mut sub = json!({"channel": channel, "auth": auth["auth"]});
    if let Some(seq) = last {
        sub["seq"] = json!(seq);
    }
    ws.send(Message::Text(
        json!({"event": "pusher:subscribe", "data": sub})
            .to_string()
            .into(),
    ))
    .await
    .map_err(|e| e.to_string())?;
    loop {
        let f = read(&mut ws).await?;
        if f["event"] == "pusher:ping" {
            let _ = ws
                .send(Message::Text(
                    json!({"event": "pusher:pong", "data": {}})
                        .to_string()
                        .into(),
                ))
                .await;
            continue;
        }
        if f["event"] == "pusher_internal:subscription_succeeded" {
            subscribed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            continue;
        }
        let Some(data) = f["data"].as_str() else {
            continue;
        };
        let Ok(e) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        if let Some(seq) = e["seq"].as_i64() {
            if f["channel"] == channel {
                seqs.lock().expect("seqs").push(seq);
            }
        }
    }
}

async fn read(ws: &mut Ws) -> Result<Value, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t).map_err(|e| e.to_string())
            }
            Some(Ok(Message::Close(_))) | None => return Err("closed".into()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
        }
    }
}

#[tokio::test]
async fn chaos_a_node_killed_under_load_loses_no_command_and_no_envelope() {
    let Some(mut c) = Cluster::start(3).await else {
        return;
    };
    let admin = c.admin().await;
    let (user, token) = c.user("chaos-user@lockstep.test").await;
    // Ten locker banks of two compartments, provisioned over MQTT, each a
    // simulated locker that answers in 20 ms.
    let stats = Arc::new(Stats::default());
    let mut compartments = Vec::new();
    let mut lockers_running = Vec::new();
    for i in 0..10 {
        let serial = format!("CHAOS-{i}");
        let bank = lockers::register_bank(
            &c.services,
            &admin,
            NewBank {
                serial: serial.clone(),
                name: serial.clone(),
                location: None,
                compartments: (1..=2)
                    .map(|n| NewCompartment {
                        number: n,
                        size: "small".into(),
                        label: None,
                    })
                    .collect(),
            },
        )
        .await
        .expect("bank");
        for comp in &bank.compartments {
            lockers::grant_access(
                &c.services,
                &admin,
                comp.id,
                "chaos-user@lockstep.test",
                None,
                None,
            )
            .await
            .expect("grant");
            compartments.push(comp.id);
        }
        let creds = provision(
            &c.broker.provisioning(),
            &identity(&serial),
            Duration::from_secs(30),
        )
        .await
        .expect("provisions");
        let behaviour = Behaviour {
            latency: Duration::from_millis(250),
            ..Behaviour::default()
        };
        let mut locker = run(&c.broker.lockers(), creds, behaviour, stats.clone());
        locker
            .wait_ready(Duration::from_secs(20))
            .await
            .expect("locker up");
        lockers_running.push(locker);
    }
    let all_online = async {
        loop {
            let banks = lockers::list_banks(&c.services, admin.user.tenant_id)
                .await
                .expect("banks");
            if banks.iter().filter(|b| b.online == Some(true)).count() == 10 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), all_online)
        .await
        .is_err()
    {
        let banks = lockers::list_banks(&c.services, admin.user.tenant_id)
            .await
            .expect("banks");
        let states: Vec<String> = banks
            .iter()
            .map(|b| format!("{}:{:?}:{}", b.serial, b.online, b.state))
            .collect();
        let logs: String = c
            .logs()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.starts_with("----"))
            .collect::<Vec<_>>()
            .join("\n");
        panic!("not every bank came online: {states:?}\n{logs}");
    }

    // Six followers of the user's channel through HAProxy.
    let channel = format!("private-user.{}", user.id);
    let followers: Vec<Follower> = (0..6)
        .map(|_| Follower::start(c.lb, channel.clone(), token.clone()))
        .collect();
    let subscribed = async {
        while followers
            .iter()
            .any(|f| f.subscribed.load(std::sync::atomic::Ordering::SeqCst) == 0)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), subscribed)
        .await
        .expect("every follower subscribes");

    // 50 opens a second through HAProxy for 12 s; node 1 is killed at 4 s
    // and started again at 8 s.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut every = tokio::time::interval(Duration::from_millis(20));
    let mut requests = Vec::new();
    let mut killed = false;
    let mut restarted = false;
    for i in 0..600usize {
        every.tick().await;
        if !killed && started.elapsed() >= Duration::from_secs(4) {
            c.nodes[1].kill();
            killed = true;
        }
        if killed && !restarted && started.elapsed() >= Duration::from_secs(8) {
            spawn_node(&c.env, &mut c.nodes[1]);
            restarted = true;
        }
        let url = format!(
            "http://{}/api/v1/compartments/{}/open",
            c.lb,
            compartments[i % compartments.len()]
        );
        let req = http.post(url).bearer_auth(&token).send();
        requests.push(tokio::spawn(async move {
            match req.await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            }
        }));
    }
    let mut answers: HashMap<u16, usize> = HashMap::new();
    for r in requests {
        *answers.entry(r.await.expect("task")).or_default() += 1;
    }
    assert!(
        answers.get(&202).copied().unwrap_or(0) >= 400,
        "too few opens were accepted for the run to mean anything: {answers:?}"
    );

    // Every command in the store ends opened or failed (the dead node's
    // claimed jobs are taken over when their lease runs out).
    let db = &c.services.db;
    let settled = async {
        loop {
            let row = sqlx::query(
                "SELECT COUNT(*) AS n FROM open_requests WHERE status NOT IN ('opened', 'failed', 'denied')",
            )
            .fetch_one(&db.pool)
            .await
            .expect("q");
            let open: i64 = sqlx::Row::try_get(&row, "n").expect("n");
            if open == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), settled)
        .await
        .unwrap_or_else(|_| panic!("commands stayed unfinished:\n{}", c.logs()));
    let rows = sqlx::query("SELECT command_id, status FROM open_requests")
        .fetch_all(&db.pool)
        .await
        .expect("q");
    let statuses: HashMap<String, String> = rows
        .iter()
        .map(|r| {
            (
                sqlx::Row::try_get::<String, _>(r, "command_id").expect("id"),
                sqlx::Row::try_get::<String, _>(r, "status").expect("status"),
            )
        })
        .collect();
    let accepted = statuses.values().filter(|s| *s != "denied").count();
    assert!(
        accepted >= answers.get(&202).copied().unwrap_or(0),
        "an accepted command is missing"
    );
    // Each command the lockers carried out, once, and it ended opened.
    let opened_at_lockers = stats.opened.lock().expect("stats").clone();
    let unique: HashSet<Uuid> = opened_at_lockers.iter().copied().collect();
    assert_eq!(
        unique.len(),
        opened_at_lockers.len(),
        "a locker carried a command out twice"
    );
    for id in &unique {
        let status = statuses.get(&id.to_string()).map(String::as_str);
        assert!(
            matches!(status, Some("opened") | Some("failed")),
            "{id} opened at the locker is {status:?} in the store"
        );
    }
    let opened = statuses.values().filter(|s| *s == "opened").count();
    eprintln!(
        "chaos: answers {answers:?}; {accepted} commands, {opened} opened, {} at the lockers, {} duplicates ignored there",
        unique.len(),
        stats.duplicates_ignored.load(std::sync::atomic::Ordering::SeqCst)
    );

    // Every follower, including those that were on the dead node, has the
    // channel gap-free and without a duplicate, up to its head.
    await_ok(
        &c.nodes[1].url("/readyz"),
        Duration::from_secs(60),
        "restarted node",
    )
    .await;
    let head = lockstep_core::eventstore::channels::head(
        db,
        &channel
            .parse::<lockstep_core::eventstore::channels::Channel>()
            .expect("channel"),
    )
    .await
    .expect("head");
    let caught_up = async {
        while followers.iter().any(|f| f.last() < head) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), caught_up)
        .await
        .unwrap_or_else(|_| panic!("a follower never reached seq {head}"));
    let mut reconnected = 0;
    for (i, f) in followers.iter().enumerate() {
        f.task.abort();
        let seqs = f.seqs.lock().expect("seqs").clone();
        let first = seqs.first().copied().unwrap_or(1);
        let expected: Vec<i64> = (first..=head).collect();
        assert_eq!(seqs, expected, "follower {i} has a gap or a duplicate");
        if f.reconnects.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            reconnected += 1;
        }
    }
    assert!(
        reconnected > 0,
        "no follower was on the killed node; the run proved nothing"
    );
    for l in lockers_running {
        l.stop();
    }
}

#[tokio::test]
async fn sigterm_fails_readyz_first_then_closes_sockets_with_4200_and_its_members_leave() {
    let Some(mut c) = Cluster::start_with(2, &[("LOCKSTEP_DRAIN_DELAY_SECS", "1")]).await else {
        return;
    };
    let channel = "presence-room.drain";
    let mut ann = Client::connect(c.nodes[0].addr).await;
    ann.join(&c.keys, channel, "ann").await;
    let mut bob = Client::connect(c.nodes[1].addr).await;
    bob.join(&c.keys, channel, "bob").await;
    assert_eq!(
        ann.next_event().await["event"],
        "pusher_internal:member_added"
    );

    let asked = Instant::now();
    c.nodes[1].terminate();
    // /readyz fails while Bob's socket is still open.
    let ready = c.nodes[1].url("/readyz");
    let failing = async {
        loop {
            if let Ok(r) = reqwest::get(&ready).await {
                if r.status().as_u16() == 503 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), failing)
        .await
        .expect("/readyz fails at SIGTERM");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "/readyz failed only after the drain delay"
    );
    // Then, after the delay, the close: 4200 (reconnect now).
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), bob.ws.next())
            .await
            .expect("a close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close, 4200);
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "closed before the drain delay"
    );
    // Ann hears Bob leave, from the node's own exit, not from a lease
    // running out.
    let removed = ann.next_event().await;
    assert_eq!(
        removed["event"], "pusher_internal:member_removed",
        "{removed}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(LEASE_SECS),
        "member_removed waited for the lease: {:?}",
        asked.elapsed()
    );
    let status = c.nodes[1].wait();
    assert!(
        status.success(),
        "the node exited with {status}:\n{}",
        c.logs()
    );
    assert!(
        lockstep_core::cluster::presence::members(&c.services.db, channel)
            .await
            .expect("members")
            .iter()
            .all(|m| m.user_id == "ann")
    );
}

#[tokio::test]
async fn an_append_whose_wake_up_never_came_still_reaches_subscribers() {
    let Some(c) = Cluster::start(1).await else {
        return;
    };
    let admin = c.admin().await;
    let channel = format!("private-tenant.{}.lockers", admin.user.tenant_id);
    let mut client = Client::connect(c.nodes[0].addr).await;
    let auth = c.keys.log_channel_auth(&client.socket_id, &channel);
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}))
        .await;
    assert_eq!(
        client.next_event().await["event"],
        "pusher_internal:subscription_succeeded"
    );
    // This test's own process appends (it is no node: it tells nobody);
    // the node's periodic look at the log finds it.
    let appended = Instant::now();
    lockers::register_bank(
        &c.services,
        &admin,
        NewBank {
            serial: "SILENT-1".into(),
            name: "Silent".into(),
            location: None,
            compartments: vec![NewCompartment {
                number: 1,
                size: "small".into(),
                label: None,
            }],
        },
    )
    .await
    .expect("bank");
    let f = client.next_event().await;
    let e: Value = serde_json::from_str(f["data"].as_str().expect("data")).expect("envelope");
    assert_eq!(e["event"], "LockerBankRegistered", "{e}");
    assert!(
        appended.elapsed() < Duration::from_secs(7),
        "the periodic read took {:?}",
        appended.elapsed()
    );
}

/// Reads webhook batches until every event of `expected` came, then
/// asserts that nothing else did (batches of several nodes may arrive in
/// any order; within one node's, the order is asserted by the caller).
async fn expect_hooks(hooks: &mut crate::hub_presence::Hooks, expected: &[Value]) -> Vec<Value> {
    let key = |v: &Value| v.to_string();
    let mut want: Vec<String> = expected.iter().map(key).collect();
    want.sort();
    let mut all = Vec::new();
    loop {
        let (_, _, body, _) = crate::hub_presence::next_hook(hooks).await;
        let batch: Value = serde_json::from_str(&body).expect("json");
        all.extend(batch["events"].as_array().cloned().unwrap_or_default());
        let mut got: Vec<String> = all.iter().map(key).collect();
        got.sort();
        if want.iter().all(|w| got.contains(w)) {
            assert_eq!(got, want, "other webhook events came too");
            return all;
        }
    }
}

#[tokio::test]
async fn webhooks_report_a_channel_once_for_the_cluster_and_vacate_it_only_when_nobody_follows() {
    let (url, mut hooks) = crate::hub_presence::webhook_receiver(0).await;
    let Some(mut c) =
        Cluster::start_with(2, &[("LOCKSTEP_PUSHER_WEBHOOK_URLS", url.as_str())]).await
    else {
        return;
    };
    let room = "presence-room.hooks";
    let (a, b) = (c.nodes[0].addr, c.nodes[1].addr);
    let mut ann = Client::connect(a).await;
    ann.join(&c.keys, room, "ann").await;
    let mut bob = Client::connect(b).await;
    bob.join(&c.keys, room, "bob").await;
    // Occupied once, though followed on two nodes.
    let seen = expect_hooks(
        &mut hooks,
        &[
            json!({"name": "channel_occupied", "channel": room}),
            json!({"name": "member_added", "channel": room, "user_id": "ann"}),
            json!({"name": "member_added", "channel": room, "user_id": "bob"}),
        ],
    )
    .await;
    let at = |name: &str, user: Option<&str>| {
        seen.iter()
            .position(|e| e["name"] == name && user.is_none_or(|u| e["user_id"] == u))
            .expect("reported")
    };
    assert!(
        at("channel_occupied", None) < at("member_added", Some("ann")),
        "{seen:?}"
    );
    // Ann leaves; Bob still follows it on B: no vacated (soketi #616).
    let _ = ann.ws.close(None).await;
    drop(ann);
    expect_hooks(
        &mut hooks,
        &[json!({"name": "member_removed", "channel": room, "user_id": "ann"})],
    )
    .await;
    // Bob's node dies: the survivor sweeps it, and reports him gone and
    // the channel vacated, once.
    c.nodes[1].kill();
    let seen = expect_hooks(
        &mut hooks,
        &[
            json!({"name": "member_removed", "channel": room, "user_id": "bob"}),
            json!({"name": "channel_vacated", "channel": room}),
        ],
    )
    .await;
    assert_eq!(seen[1]["name"], "channel_vacated", "{seen:?}");
    drop(bob);
    // Nothing else was pending: the next report is a fresh occupation.
    let mut cy = Client::connect(a).await;
    cy.subscribe("after-hooks").await;
    expect_hooks(
        &mut hooks,
        &[json!({"name": "channel_occupied", "channel": "after-hooks"})],
    )
    .await;
}
