//! One ACL matrix, run against both brokers (issue 12, fault 4): the
//! repo's Mosquitto (deploy/mosquitto) and the embedded broker. What a
//! client may read is judged by what reaches it, what it may write by
//! what reaches the server or the locker: the two brokers answer some
//! refused subscriptions differently (Mosquitto's ACL file grants a
//! wildcard filter and filters each message), never what gets through.

use std::time::Duration;

use locker_sim::{provision, Credentials, Endpoint};
use lockstep_core::opens;
use lockstep_server::{config::MqttMode, ServeConfig};
use lockstep_wire::mqtt::parse_command;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{helpers::*, mqtt::await_status, provisioning::*};

/// Where the lockers and the provisioning clients connect.
struct Target {
    name: &'static str,
    lockers: Endpoint,
    provisioning: Endpoint,
}

/// A raw client: what it receives, by topic, and its SUBACK codes.
struct Raw {
    client: AsyncClient,
    got: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    subacks: mpsc::UnboundedReceiver<Vec<SubscribeReasonCode>>,
}

/// Connects; `Err` with the CONNACK code when refused.
async fn connect(
    at: &Endpoint,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> Result<Raw, Option<ConnectReturnCode>> {
    let mut opts = MqttOptions::new(client_id, at.host.clone(), at.port);
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = login {
        opts.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 32);
    let first = tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
        .await
        .expect("an answer to CONNECT in time");
    match first {
        Ok(Event::Incoming(Packet::ConnAck(a))) if a.code == ConnectReturnCode::Success => {}
        Ok(Event::Incoming(Packet::ConnAck(a))) => return Err(Some(a.code)),
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Err(Some(code)),
        Ok(other) => panic!("unexpected first event {other:?}"),
        Err(_) => return Err(None),
    }
    let (tx, got) = mpsc::unbounded_channel();
    let (stx, subacks) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = eventloop.poll().await {
            match e {
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send((p.topic, p.payload.to_vec()));
                }
                Event::Incoming(Packet::SubAck(a)) => {
                    let _ = stx.send(a.return_codes);
                }
                _ => {}
            }
        }
    });
    Ok(Raw {
        client,
        got,
        subacks,
    })
}

impl Raw {
    async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue");
        tokio::time::timeout(Duration::from_secs(10), self.subacks.recv())
            .await
            .expect("SUBACK in time")
            .expect("connected")[0]
    }

    /// Publishes at QoS 1 (both brokers acknowledge even a refused one).
    async fn publish(&self, topic: &str, payload: String) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("queue");
    }

    /// The next message, which must come within 15 s.
    async fn next(&mut self) -> (String, Vec<u8>) {
        tokio::time::timeout(Duration::from_secs(15), self.got.recv())
            .await
            .expect("a message in time")
            .expect("connected")
    }
}

async fn matrix(target: Target, app: &TestApp) {
    let name = target.name;
    let admin = admin_of(app).await;
    let a = bank(app, &admin, &format!("ACL-A-{name}")).await;
    let b = bank(app, &admin, &format!("ACL-B-{name}")).await;
    let creds = |serial: String| {
        let at = target.provisioning.clone();
        async move {
            provision(&at, &identity(&serial), Duration::from_secs(20))
                .await
                .expect("provisioned")
        }
    };
    let ca: Credentials = creds(format!("ACL-A-{name}")).await;
    let cb: Credentials = creds(format!("ACL-B-{name}")).await;
    let login = |c: &Credentials| (c.username.clone(), c.password.clone());
    let (ua, pa) = login(&ca);
    let (ub, pb) = login(&cb);

    // Logins: a wrong secret, another client id, no login at all, the
    // provisioning account on the locker listener: CONNACK 0x05.
    for (who, client_id, l) in [
        ("wrong secret", ua.as_str(), Some((ua.as_str(), "guess"))),
        (
            "another client id",
            "not-a",
            Some((ua.as_str(), pa.as_str())),
        ),
        ("no login", "anon", None),
    ] {
        assert_eq!(
            connect(&target.lockers, client_id, l).await.err(),
            Some(Some(ConnectReturnCode::NotAuthorized)),
            "{name}: {who}"
        );
    }

    // Locker B as a raw client: its commands and acks only.
    let mut lb = connect(&target.lockers, &ub, Some((&ub, &pb)))
        .await
        .expect("B logs in");
    for (filter, ok) in [
        (format!("locker/{}/command", b.id), true),
        (format!("locker/{}/ack", b.id), true),
        (format!("locker/{}/command", a.id), false),
    ] {
        let code = lb.subscribe(&filter).await;
        assert_eq!(
            code != SubscribeReasonCode::Failure,
            ok,
            "{name}: B subscribing {filter}: {code:?}"
        );
    }
    // Locker A as a raw client, trying to read everything.
    let mut la = connect(&target.lockers, &ua, Some((&ua, &pa)))
        .await
        .expect("A logs in");
    for filter in ["locker/+/command", "#", "provisioning/+/reply"] {
        let _ = la.subscribe(filter).await;
    }
    let _ = la.subscribe(&format!("locker/{}/command", a.id)).await;
    // A provisioning client trying the same.
    let prov = (
        target.provisioning.username.clone().unwrap_or_default(),
        target.provisioning.password.clone().unwrap_or_default(),
    );
    let mut snoop = connect(
        &target.provisioning,
        "prov-snoop-acl-0123456789",
        Some((&prov.0, &prov.1)),
    )
    .await
    .expect("provisioning login");
    for filter in ["locker/+/command", "#", "locker/+/status"] {
        let _ = snoop.subscribe(filter).await;
    }
    let _ = snoop
        .subscribe("provisioning/prov-snoop-acl-0123456789/reply")
        .await;

    // Writes that must go nowhere: the provisioning client forging a
    // command for B, and A forging B's result (checked below).
    let forged = Uuid::now_v7();
    snoop
        .publish(
            &format!("locker/{}/command", b.id),
            format!(
                r#"{{"v":1,"command_id":"{forged}","action":"open","compartment":1,"issued_at":0,"expires_at":9999999999999}}"#
            ),
        )
        .await;

    // A real command for B: B gets it, and it is the first thing B gets
    // (the forged one, published before, never arrived).
    let mut feed = app.services.log_tail.subscribe();
    let d = override_open(app, &admin, b.compartments[0].id, "acl matrix").await;
    let (topic, payload) = lb.next().await;
    assert_eq!(topic, format!("locker/{}/command", b.id), "{name}");
    let cmd = parse_command(&payload).expect("a command");
    assert_eq!(
        cmd.command_id, d.command_id,
        "{name}: B's first command is the server's, not the provisioning client's forgery"
    );
    await_status(app, &mut feed, &admin, d.command_id, "sent").await;
    // A forges B's result; then B sends its own, a failure. Had the
    // forgery got through, the command would have ended opened.
    la.publish(
        &format!("locker/{}/status", b.id),
        format!(
            r#"{{"v":1,"command_id":"{}","result":"action_completed","error":null}}"#,
            d.command_id
        ),
    )
    .await;
    lb.publish(
        &format!("locker/{}/status", b.id),
        format!(
            r#"{{"v":1,"command_id":"{}","result":"action_failed","error":"real"}}"#,
            d.command_id
        ),
    )
    .await;
    await_status(app, &mut feed, &admin, d.command_id, "failed").await;
    // B's result is acknowledged to B (and only to B, below).
    let (topic, payload) = lb.next().await;
    assert_eq!(topic, format!("locker/{}/ack", b.id), "{name}");
    assert_eq!(
        lockstep_wire::mqtt::parse_ack(&payload)
            .expect("an ack")
            .command_id,
        d.command_id
    );
    let end = opens::get_open_request(&app.services, &admin, d.command_id)
        .await
        .expect("q")
        .expect("visible");
    assert_eq!(end.failure_detail.as_deref(), Some("real"), "{name}");

    // A third locker provisions: its reply goes to its own client only.
    let _ = bank(app, &admin, &format!("ACL-C-{name}")).await;
    let _ = creds(format!("ACL-C-{name}")).await;

    // Then a command for A: the first thing A gets, so neither B's
    // command, nor B's ack, nor C's reply (all routed before) reached A.
    let e = override_open(app, &admin, a.compartments[0].id, "acl matrix").await;
    let (topic, payload) = la.next().await;
    assert_eq!(topic, format!("locker/{}/command", a.id), "{name}");
    assert_eq!(
        parse_command(&payload).expect("cmd").command_id,
        e.command_id,
        "{name}"
    );
    // And the snooper's own reply is the first thing it gets: no command,
    // no result, no ack, no other client's reply.
    snoop
        .publish(
            "provisioning/register",
            r#"{"v":1,"client_id":"prov-snoop-acl-0123456789","serial":"NO-SUCH-SERIAL","compartments":[{"number":1,"size":"small","label":null}]}"#
                .to_string(),
        )
        .await;
    let (topic, _) = snoop.next().await;
    assert_eq!(
        topic, "provisioning/prov-snoop-acl-0123456789/reply",
        "{name}"
    );
}

#[tokio::test]
async fn the_acl_matrix_holds_on_the_repo_mosquitto() {
    let broker = RepoBroker::start().await;
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = ServeConfig::for_tests(&db.url, db.dir.clone());
    config.mqtt_url = Some(lockstep_server::Secret::new(format!(
        "mqtt://lockstep:{BRIDGE_PASSWORD}@127.0.0.1:{}",
        broker.dynsec_port
    )));
    let app = start(config).await;
    let target = Target {
        name: "mosquitto",
        lockers: broker.lockers(),
        provisioning: broker.provisioning(),
    };
    matrix(target, &app).await;
    app.stop().await;
}

#[tokio::test]
async fn the_acl_matrix_holds_on_the_embedded_broker() {
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = ServeConfig::for_tests(&db.url, db.dir.clone());
    // Port 0: the broker binds a port of its own (a port picked free
    // beforehand can be taken by another test before the broker binds it),
    // and the URL lockers are given names it.
    config.mqtt = MqttMode::Embedded;
    config.mqtt_embedded_addr = ([127, 0, 0, 1], 0).into();
    let app = start(config).await;
    let port: u16 = app
        .services
        .locker_broker_url
        .as_deref()
        .and_then(|url| url.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("the embedded broker's URL names its port");
    let at = |user: Option<&str>, pw: Option<&str>| Endpoint {
        host: "127.0.0.1".into(),
        port,
        username: user.map(str::to_string),
        password: pw.map(str::to_string),
    };
    let refused_before = rejections(&app, "mqtt_acl_denied").await;
    let logins_before = rejections(&app, "mqtt_login_refused").await;
    let target = Target {
        name: "embedded",
        lockers: at(None, None),
        provisioning: at(Some("provisioning"), Some("provisioning-test-password")),
    };
    // Beyond Mosquitto's rules: client ids that would widen a topic rule
    // (`provisioning/+/reply`), and a provisioning login taking a locker's
    // client id (it would push the locker off), are refused: 0x02.
    let prov = at(Some("provisioning"), Some("provisioning-test-password"));
    for id in [
        "+",
        "#",
        "a/b",
        "short",
        &format!("locker-{}", Uuid::now_v7()),
    ] {
        assert_eq!(
            connect(
                &prov,
                id,
                Some(("provisioning", "provisioning-test-password"))
            )
            .await
            .err(),
            Some(Some(ConnectReturnCode::BadClientId)),
            "client id {id:?}"
        );
    }
    raw_protocol_checks(port).await;
    matrix(target, &app).await;
    // Each refusal was counted: three logins, and at least the refused
    // subscriptions and the two forged publishes.
    assert!(rejections(&app, "mqtt_login_refused").await >= logins_before + 3 + 5);
    assert!(rejections(&app, "mqtt_acl_denied").await >= refused_before + 2 + 6);
    app.stop().await;
}

/// Raw packets, as a client library would not send them: an MQTT 5
/// CONNECT gets CONNACK 0x01 (not a dropped connection), and a publish to
/// a wildcard topic ends the connection (a protocol error).
async fn raw_protocol_checks(port: u16) {
    use bytes::BytesMut;
    use rumqttc::mqttbytes::v4::{Connect, Publish};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // CONNECT, "MQTT", level 5, clean start, keep-alive 60, no properties,
    // client id "v5-client".
    let mut v5 = vec![
        0x10, 0, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 9,
    ];
    v5.extend_from_slice(b"v5-client");
    v5[1] = (v5.len() - 2) as u8;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(&v5).await.expect("write");
    let mut connack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut connack))
        .await
        .expect("an answer in time")
        .expect("a CONNACK");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x01], "CONNACK 0x01 for MQTT 5");

    // A logged-in provisioning client publishing to `locker/+/status`.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut out = BytesMut::new();
    let mut connect = Connect::new("prov-raw-client-0123456789");
    connect.set_login("provisioning", "provisioning-test-password");
    connect.write(&mut out).expect("encode");
    s.write_all(&out).await.expect("write");
    let mut connack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut connack))
        .await
        .expect("an answer in time")
        .expect("a CONNACK");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "logged in");
    let mut out = BytesMut::new();
    Publish::new("locker/+/status", QoS::AtMostOnce, "x")
        .write(&mut out)
        .expect("encode");
    s.write_all(&out).await.expect("write");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the broker closed the connection");
}
