//! Provisioning over MQTT, end to end: a real Mosquitto started from the
//! repo's deploy/mosquitto config (dynsec listener + provisioning listener),
//! the simulator's lockers as real clients, and the same flow on the
//! embedded broker.

use lockstep_wire::OpenStatus;
use std::{process::Stdio, time::Duration};

use locker_sim::{provision, run, Behaviour, Credentials, Endpoint, Identity, Stats};
use lockstep_core::{
    eventstore::channels::{self, Channel},
    eventstore::events::Actor,
    identity::accounts::Role,
    identity::caller::Caller,
    lockers::{self, NewBank, NewCompartment},
    now_ms,
    opens::{self, OpenCommandInput},
    provisioning,
};
use lockstep_server::{config::MqttMode, ServeConfig};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, SubscribeReasonCode,
};
use std::sync::Arc;
use uuid::Uuid;

use crate::{helpers::*, mqtt::await_status, mqtt::tempdir};

pub(crate) const BRIDGE_PASSWORD: &str = "bridge-secret-for-tests";
const PROVISIONING_PASSWORD: &str = "provisioning-secret-for-tests";

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Mosquitto from deploy/mosquitto (initialised by its own script).
pub(crate) struct RepoBroker {
    child: Option<std::process::Child>,
    conf: std::path::PathBuf,
    pub(crate) dynsec_port: u16,
    pub(crate) provisioning_port: u16,
    _dir: tempdir::Dir,
}

impl RepoBroker {
    pub(crate) async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("lockstep-broker-{}", Uuid::now_v7().simple()));
        let (dynsec_port, provisioning_port) = (free_port(), free_port());
        let init = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/mosquitto/init");
        let out = std::process::Command::new("bash")
            .arg(init)
            .arg(&dir)
            .args(["--dynsec-port", &dynsec_port.to_string()])
            .args(["--provisioning-port", &provisioning_port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .env("LOCKSTEP_BROKER_PASSWORD", BRIDGE_PASSWORD)
            .env("PROVISIONING_PASSWORD", PROVISIONING_PASSWORD)
            .output()
            .expect("the init script runs");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut broker = RepoBroker {
            child: None,
            conf: dir.join("mosquitto.conf"),
            dynsec_port,
            provisioning_port,
            _dir: tempdir::Dir(dir),
        };
        broker.resume().await;
        broker
    }

    /// (Re)starts the process on the same ports and data.
    pub(crate) async fn resume(&mut self) {
        self.child = Some(
            std::process::Command::new("mosquitto")
                .arg("-c")
                .arg(&self.conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto is installed"),
        );
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.provisioning_port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("mosquitto did not start");
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A clean restart's first half: SIGTERM, so Mosquitto saves its
    /// persistent sessions (subscriptions and queued QoS 1 messages).
    pub(crate) fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    pub(crate) fn provisioning(&self) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port: self.provisioning_port,
            username: Some("provisioning".into()),
            password: Some(PROVISIONING_PASSWORD.into()),
        }
    }

    pub(crate) fn lockers(&self) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port: self.dynsec_port,
            username: None,
            password: None,
        }
    }
}

impl Drop for RepoBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) async fn admin_of(app: &TestApp) -> Caller {
    let u = lockstep_core::identity::accounts::find_user_by_email(&app.services.db, ADMIN_EMAIL)
        .await
        .expect("q")
        .expect("admin");
    Caller::new(u.clone(), Actor::User { id: u.id })
}

pub(crate) async fn bank(app: &TestApp, admin: &Caller, serial: &str) -> lockers::BankView {
    lockers::register_bank(
        &app.services,
        admin,
        NewBank {
            serial: serial.into(),
            name: serial.into(),
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
    .expect("bank")
}

pub(crate) fn identity(serial: &str) -> Identity {
    Identity {
        serial: serial.into(),
        compartments: 2,
        provisioning_key: None,
        model: "LX-2".into(),
        firmware: "2.0.0".into(),
    }
}

/// An admin's override open of `compartment` (accepted, or the test fails).
pub(crate) async fn override_open(
    app: &TestApp,
    admin: &Caller,
    compartment: Uuid,
    reason: &str,
) -> opens::OpenDecision {
    opens::request_open(
        &app.services,
        admin,
        OpenCommandInput {
            compartment_id: compartment,
            override_: true,
            reason: Some(reason.into()),
            ..Default::default()
        },
        now_ms(),
    )
    .await
    .expect("open")
}

/// Waits on the log feed until the bank is in `state` (at most 60 s: the
/// whole suite shares two cores with its brokers, and 20 s once ran out
/// while the broker-restart test was at work).
pub(crate) async fn await_bank_state(app: &TestApp, admin: &Caller, bank_id: Uuid, state: &str) {
    let mut feed = app.services.log_tail.subscribe();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let b = lockers::get_bank(&app.services, admin.user.tenant_id, bank_id)
                .await
                .expect("q")
                .expect("bank");
            if b.state == state {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), feed.recv()).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("bank {bank_id} never reached {state}"));
}

/// A raw client logged in with a locker's account; returns the first
/// SUBACK code for `filter` (or the CONNACK refusal).
async fn try_subscribe(
    at: &Endpoint,
    who: &Credentials,
    client_id: &str,
    filter: &str,
) -> Result<SubscribeReasonCode, Option<ConnectReturnCode>> {
    let mut opts = MqttOptions::new(client_id, at.host.clone(), at.port);
    opts.set_credentials(who.username.clone(), who.password.clone());
    let (client, mut eventloop) = AsyncClient::new(opts, 8);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("queue");
    let out = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(ack))) => return Ok(ack.return_codes[0]),
                Ok(Event::Incoming(Packet::ConnAck(a))) if a.code != ConnectReturnCode::Success => {
                    return Err(Some(a.code))
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Err(Some(code)),
                Err(_) => return Err(None),
            }
        }
    })
    .await
    .expect("an answer in time");
    let _ = client.try_disconnect();
    out
}

/// A raw MQTT client logged in as a provisioned locker, its event loop
/// running in the background.
fn connect_as(creds: &Credentials, port: u16) -> AsyncClient {
    let mut opts = MqttOptions::new(creds.username.clone(), "127.0.0.1", port);
    opts.set_credentials(creds.username.clone(), creds.password.clone());
    let (client, mut eventloop) = AsyncClient::new(opts, 8);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
}

/// Publishes a status payload on `locker/{bank}/status` (QoS 1).
async fn send_status(client: &AsyncClient, bank: Uuid, payload: String) {
    client
        .publish(
            format!("locker/{bank}/status"),
            QoS::AtLeastOnce,
            false,
            payload,
        )
        .await
        .expect("queue");
}

async fn channel_events(app: &TestApp, bank_id: Uuid) -> Vec<String> {
    channels::since(&app.services.db, &Channel::LockerBank(bank_id), 0, 200)
        .await
        .expect("since")
        .events
        .into_iter()
        .map(|e| e.event)
        .collect()
}

#[tokio::test]
async fn provisioning_acls_opens_and_decommissioning_on_the_repo_mosquitto() {
    let broker = RepoBroker::start().await;
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = ServeConfig::for_tests(&db.url, db.dir.clone());
    config.mqtt_url = Some(lockstep_server::Secret::new(format!(
        "mqtt://lockstep:{BRIDGE_PASSWORD}@127.0.0.1:{}",
        broker.dynsec_port
    )));
    let app = start(config).await;
    let admin = admin_of(&app).await;
    let a = bank(&app, &admin, "PROV-A").await;
    let b = bank(&app, &admin, "PROV-B").await;

    // Unknown serials are refused with a reason the locker can read.
    match provision(
        &broker.provisioning(),
        &identity("PROV-NOPE"),
        Duration::from_secs(20),
    )
    .await
    {
        Err(locker_sim::SimError::Refused { error, .. }) => assert_eq!(
            error,
            Some(lockstep_wire::mqtt::ProvisioningFailure::UnknownSerial)
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Full provisioning of A and B, as real clients.
    let creds_a = provision(
        &broker.provisioning(),
        &identity("PROV-A"),
        Duration::from_secs(20),
    )
    .await
    .expect("A provisions");
    let creds_b = provision(
        &broker.provisioning(),
        &identity("PROV-B"),
        Duration::from_secs(20),
    )
    .await
    .expect("B provisions");
    assert_eq!((creds_a.bank_id, creds_b.bank_id), (a.id, b.id));
    let stats = Arc::new(Stats::default());
    let mut locker_a = run(
        &broker.lockers(),
        creds_a.clone(),
        Behaviour::default(),
        stats.clone(),
    );
    locker_a
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("A connects with its account");
    await_bank_state(&app, &admin, a.id, "provisioned").await;
    assert_eq!(
        channel_events(&app, a.id).await,
        [
            "LockerBankRegistered",
            "LockerProvisioningRequested",
            "LockerProvisioningValidated",
            "LockerCredentialsCreated",
            "LockerCredentialsDelivered",
            "LockerWasProvisioned",
            "DeviceStatusChanged"
        ]
    );

    // A's account reaches only A's topics.
    assert_eq!(
        try_subscribe(
            &broker.lockers(),
            &creds_a,
            "acl-probe-1",
            &format!("locker/{}/command", b.id)
        )
        .await,
        Err(Some(ConnectReturnCode::NotAuthorized)),
        "the client id is bound to the account"
    );
    // (Same client id as A's account, but A itself is connected: use a
    // second connection only after A stops, below.)
    locker_a.stop();
    assert_eq!(
        try_subscribe(
            &broker.lockers(),
            &creds_a,
            &creds_a.username,
            &format!("locker/{}/command", b.id)
        )
        .await,
        Ok(SubscribeReasonCode::Failure),
        "A may not read B's commands"
    );
    assert!(matches!(
        try_subscribe(
            &broker.lockers(),
            &creds_a,
            &creds_a.username,
            &format!("locker/{}/command", a.id)
        )
        .await,
        Ok(SubscribeReasonCode::Success(_))
    ));

    // A provisioning client cannot read another client's reply: a snooper
    // subscribed to every reply topic (the broker grants the filter but
    // checks each message) gets its own reply and nothing else, although
    // the victim's reply was published before its own.
    let mut opts = MqttOptions::new(
        "prov-snooper-0123456789",
        "127.0.0.1",
        broker.provisioning_port,
    );
    opts.set_credentials("provisioning", PROVISIONING_PASSWORD);
    let (snooper, mut snooper_loop) = AsyncClient::new(opts, 8);
    snooper
        .subscribe("provisioning/+/reply", QoS::AtLeastOnce)
        .await
        .expect("queue");
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(e) = snooper_loop.poll().await {
            match e {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(t) = subscribed_tx.take() {
                        let _ = t.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = seen_tx.send(p.topic);
                }
                _ => {}
            }
        }
    });
    subscribed.await.expect("snooper subscribed");
    assert!(
        provision(
            &broker.provisioning(),
            &identity("PROV-NOPE-2"),
            Duration::from_secs(20)
        )
        .await
        .is_err(),
        "the victim gets its (refusal) reply"
    );
    snooper
        .publish(
            "provisioning/register",
            QoS::AtLeastOnce,
            false,
            r#"{"v":1,"client_id":"prov-snooper-0123456789","serial":"PROV-NOPE-3"}"#,
        )
        .await
        .expect("queue");
    let first = tokio::time::timeout(Duration::from_secs(20), seen.recv())
        .await
        .expect("the snooper's own reply")
        .expect("topic");
    assert_eq!(first, "provisioning/prov-snooper-0123456789/reply");
    let _ = snooper.try_disconnect();

    // Open on B: the locker answers twice (duplicate), one state change.
    let mut locker_b = run(
        &broker.lockers(),
        creds_b.clone(),
        Behaviour {
            duplicate_rate: 1.0,
            ..Behaviour::default()
        },
        stats.clone(),
    );
    locker_b
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("B ready");
    await_bank_state(&app, &admin, b.id, "provisioned").await;
    let uma = add_user(&app, "uma@lockstep.test", Role::User, "Default").await;
    let user = Caller::new(uma.clone(), Actor::User { id: uma.id });
    lockers::grant_access(
        &app.services,
        &admin,
        b.compartments[0].id,
        "uma@lockstep.test",
        None,
        None,
    )
    .await
    .expect("grant");
    let d = opens::request_open(
        &app.services,
        &user,
        OpenCommandInput {
            compartment_id: b.compartments[0].id,
            ..Default::default()
        },
        now_ms(),
    )
    .await
    .expect("open");
    let mut feed = app.services.log_tail.subscribe();
    await_status(&app, &mut feed, &admin, d.command_id, "opened").await;

    // A forged result from A for B's next command changes nothing: only
    // B's own answer (failure this time) counts.
    locker_b.stop();
    let d2 = opens::request_open(
        &app.services,
        &user,
        OpenCommandInput {
            compartment_id: b.compartments[0].id,
            ..Default::default()
        },
        now_ms(),
    )
    .await
    .expect("open");
    await_status(&app, &mut feed, &admin, d2.command_id, "sent").await;
    let forger = connect_as(&creds_a, broker.dynsec_port);
    send_status(
        &forger,
        b.id,
        format!(
            r#"{{"v":1,"command_id":"{}","result":"action_completed"}}"#,
            d2.command_id
        ),
    )
    .await;
    let unknown_command = crate::helpers::rejections(&app, "mqtt_unknown_command").await;
    // Then a result on A's own topic for an unknown command: once the server
    // counted that, the forged one (sent before it) would have arrived too.
    send_status(
        &forger,
        a.id,
        format!(
            r#"{{"v":1,"command_id":"{}","result":"action_completed"}}"#,
            Uuid::now_v7()
        ),
    )
    .await;
    crate::helpers::await_rejection(&app, "mqtt_unknown_command", unknown_command).await;
    let still = opens::get_open_request(&app.services, &admin, d2.command_id)
        .await
        .expect("q")
        .expect("visible");
    assert_eq!(
        still.status.as_str(),
        "sent",
        "A's forged result for B was dropped by the broker"
    );
    // B's own answer, a failure, is the one that counts: → failed.
    let b_client = connect_as(&creds_b, broker.dynsec_port);
    send_status(
        &b_client,
        b.id,
        format!(
            r#"{{"v":1,"command_id":"{}","result":"action_failed","error":"jammed"}}"#,
            d2.command_id
        ),
    )
    .await;
    await_status(&app, &mut feed, &admin, d2.command_id, "failed").await;
    let failed = opens::get_open_request(&app.services, &admin, d2.command_id)
        .await
        .expect("q")
        .expect("visible");
    assert_eq!(
        failed.failure_reason.map(|r| r.as_str()),
        Some("device_error")
    );
    let _ = b_client.try_disconnect();

    // Decommissioning A kicks a connected A and keeps it out.
    let _ = forger.try_disconnect();
    let mut locker_a = run(
        &broker.lockers(),
        creds_a.clone(),
        Behaviour::default(),
        stats.clone(),
    );
    locker_a
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("A back");
    provisioning::decommission(&app.services, &admin, a.id, "end of lease")
        .await
        .expect("decommission");
    locker_a
        .wait_disconnected(Duration::from_secs(20))
        .await
        .expect("A was kicked");
    locker_a.stop();
    assert_eq!(
        try_subscribe(
            &broker.lockers(),
            &creds_a,
            &creds_a.username,
            &format!("locker/{}/command", a.id)
        )
        .await,
        Err(Some(ConnectReturnCode::NotAuthorized)),
        "a decommissioned locker cannot reconnect"
    );
    assert_eq!(
        channel_events(&app, a.id).await.last().map(String::as_str),
        Some("LockerDecommissioned")
    );
    app.stop().await;
}

async fn command_across_restart(
    broker: &mut RepoBroker,
    app: &TestApp,
    admin: &Caller,
    bank: &lockers::BankView,
    graceful: bool,
) -> opens::OpenRequestView {
    if graceful {
        broker.terminate();
    } else {
        broker.stop();
    }
    let d = override_open(app, admin, bank.compartments[0].id, "maintenance").await;
    assert_eq!(d.status, OpenStatus::Accepted);
    broker.resume().await;
    let mut feed = app.services.log_tail.subscribe();
    tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            let now = opens::get_open_request(&app.services, admin, d.command_id)
                .await
                .expect("q")
                .expect("visible");
            if now.status.as_str() == "opened" || now.status.as_str() == "failed" {
                return now;
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), feed.recv()).await;
        }
    })
    .await
    .expect("the command ended")
}

#[tokio::test]
async fn a_command_survives_a_broker_restart_or_times_out_never_stuck() {
    let mut broker = RepoBroker::start().await;
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = ServeConfig::for_tests(&db.url, db.dir.clone());
    config.mqtt_url = Some(lockstep_server::Secret::new(format!(
        "mqtt://lockstep:{BRIDGE_PASSWORD}@127.0.0.1:{}",
        broker.dynsec_port
    )));
    config.open_timeout_secs = 15;
    let app = start(config).await;
    let admin = admin_of(&app).await;
    let bank = bank(&app, &admin, "RESTART-1").await;
    let creds = provision(
        &broker.provisioning(),
        &identity("RESTART-1"),
        Duration::from_secs(20),
    )
    .await
    .expect("provisioned");
    let stats = Arc::new(Stats::default());
    let mut locker = run(
        &broker.lockers(),
        creds,
        Behaviour::default(),
        stats.clone(),
    );
    locker
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("ready");
    await_bank_state(&app, &admin, bank.id, "provisioned").await;

    // A clean broker restart while a command is issued: the command waits
    // in the bridge's session (or the locker's, saved by the broker) and is
    // delivered when both are back.
    let end = command_across_restart(&mut broker, &app, &admin, &bank, true).await;
    assert_eq!(
        end.status.as_str(),
        "opened",
        "with the broker back within seconds, the command is delivered"
    );
    // A crash (SIGKILL: the broker loses the locker's session) may lose the
    // command on the way; then the timeout ends it. Never stuck.
    let end = command_across_restart(&mut broker, &app, &admin, &bank, false).await;
    eprintln!(
        "after a broker crash the command ended {} ({:?})",
        end.status, end.failure_reason
    );
    assert!(
        end.status.as_str() == "opened"
            || end.failure_reason.map(|r| r.as_str()) == Some("timeout"),
        "{end:?}"
    );
    locker.stop();
    app.stop().await;
}

#[tokio::test]
async fn provisioning_and_opens_on_the_embedded_broker() {
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = ServeConfig::for_tests(&db.url, db.dir.clone());
    let port = free_port();
    config.mqtt = MqttMode::Embedded;
    config.mqtt_embedded_addr = ([127, 0, 0, 1], port).into();
    let app = start(config).await;
    let admin = admin_of(&app).await;
    let b = bank(&app, &admin, "EMB-1").await;
    let at = Endpoint {
        host: "127.0.0.1".into(),
        port,
        username: Some("provisioning".into()),
        password: Some("provisioning-test-password".into()),
    };
    let wrong = Endpoint {
        password: Some("wrong".into()),
        ..at.clone()
    };
    assert!(
        provision(&wrong, &identity("EMB-1"), Duration::from_secs(10))
            .await
            .is_err()
    );
    let creds = provision(&at, &identity("EMB-1"), Duration::from_secs(20))
        .await
        .expect("provisioned on the embedded broker");
    assert_eq!(
        creds.broker_url.as_deref(),
        Some(format!("mqtt://127.0.0.1:{port}").as_str()),
        "the reply names the locker listener"
    );
    let plain = Endpoint {
        username: None,
        password: None,
        ..at.clone()
    };
    let stats = Arc::new(Stats::default());
    let doors = Behaviour {
        report_doors: true,
        ..Behaviour::default()
    };
    let mut locker = run(&plain, creds.clone(), doors, stats.clone());
    locker
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("ready");
    await_bank_state(&app, &admin, b.id, "provisioned").await;

    let d = override_open(&app, &admin, b.compartments[1].id, "maintenance").await;
    let mut feed = app.services.log_tail.subscribe();
    await_status(&app, &mut feed, &admin, d.command_id, "opened").await;

    // The locker then reports the door open and closed again: two
    // transitions, two events; the read model ends closed.
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let doors = channel_events(&app, b.id)
                .await
                .iter()
                .filter(|e| *e == "CompartmentDoorChanged")
                .count();
            if doors == 2 {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), feed.recv()).await;
        }
    })
    .await
    .expect("door opened and closed");
    let bank_now = lockers::get_bank(&app.services, admin.user.tenant_id, b.id)
        .await
        .expect("q")
        .expect("bank");
    assert_eq!(bank_now.compartments[1].door_open, Some(false));

    // An oversize result (10 KiB: over the payload limit, under the
    // embedded broker's) is refused, and the next open still ends opened.
    let oversize_before = rejections(&app, "mqtt_oversize").await;
    let big = format!(
        r#"{{"v":1,"command_id":"{}","result":"action_failed","error":"{}"}}"#,
        Uuid::now_v7(),
        "e".repeat(10 * 1024)
    );
    assert!(
        publish_once(
            &creds,
            port,
            &format!("locker/{}/status", b.id),
            big.into_bytes()
        )
        .await,
        "the embedded broker takes 10 KiB"
    );
    await_rejection(&app, "mqtt_oversize", oversize_before).await;
    // That connection used the locker's client id, so the broker took the
    // session over from the simulated locker: wait until it is back.
    let _ = locker.wait_disconnected(Duration::from_secs(3)).await;
    locker
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("locker back");
    let again = override_open(
        &app,
        &admin,
        b.compartments[0].id,
        "after an oversize result",
    )
    .await;
    await_status(&app, &mut feed, &admin, again.command_id, "opened").await;

    // The client id is bound to the account; a wrong secret is refused.
    assert!(
        try_subscribe(&plain, &creds, "someone-else", "locker/x/command")
            .await
            .is_err()
    );
    assert!(try_subscribe(&plain, &creds, &creds.username, "x")
        .await
        .is_ok());
    let forged = Credentials {
        password: "guess".into(),
        ..creds.clone()
    };
    assert!(try_subscribe(&plain, &forged, &creds.username, "x")
        .await
        .is_err());

    // Decommissioned: the connected locker is disconnected at once, and
    // refused (CONNACK 0x05) at every login after.
    locker
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("locker connected");
    provisioning::decommission(&app.services, &admin, b.id, "gone")
        .await
        .expect("decommission");
    locker
        .wait_disconnected(Duration::from_secs(10))
        .await
        .expect("the decommissioned locker is disconnected by the broker");
    locker.stop();
    assert_eq!(
        try_subscribe(&plain, &creds, &creds.username, "x").await,
        Err(Some(ConnectReturnCode::NotAuthorized))
    );
    app.stop().await;
}

#[tokio::test]
async fn provisioning_keys_and_decommissioning_over_http() {
    use crate::open_flow::{call, token};
    use reqwest::Method;
    use serde_json::json;

    let (app, _db) = spawn_app().await;
    add_user(&app, "uma@lockstep.test", Role::User, "Default").await;
    let admin = token(&app, ADMIN_EMAIL, "*").await;
    let user = token(&app, "uma@lockstep.test", "*").await;

    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/provisioning-keys",
        &admin,
        Some(json!({"name": "line 1"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("lpk_"));
    let key_id = body["key"]["id"].as_str().expect("id").to_string();
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/provisioning-keys",
        &user,
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(status, 403, "a user creates no keys");
    let (status, list) = call(&app, Method::GET, "/api/v1/provisioning-keys", &admin, None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert!(
        !list.to_string().contains(&secret),
        "listing never shows the secret"
    );

    // The key admits a locker with an unknown serial (recording gateway).
    let reply = provisioning::provision(
        &app.services,
        provisioning::Registration {
            client_id: "prov-http-0123456789abcdef".into(),
            serial: "HTTP-1".into(),
            name: None,
            model: None,
            firmware: None,
            compartments: vec![NewCompartment {
                number: 1,
                size: "small".into(),
                label: None,
            }],
            provisioning_key: Some(secret.clone()),
        },
    )
    .await
    .expect("provision");
    assert!(reply.ok, "{reply:?}");
    let bank_id = reply.locker_bank_id.expect("bank");

    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/provisioning-keys/{key_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/provisioning-keys/{key_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 404);

    let path = format!("/api/v1/locker-banks/{bank_id}/decommission");
    let (status, _) = call(
        &app,
        Method::POST,
        &path,
        &admin,
        Some(json!({"reason": ""})),
    )
    .await;
    assert_eq!(status, 422, "a reason is required");
    let (status, _) = call(
        &app,
        Method::POST,
        &path,
        &user,
        Some(json!({"reason": "x"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, bank) = call(
        &app,
        Method::POST,
        &path,
        &admin,
        Some(json!({"reason": "moved out"})),
    )
    .await;
    assert_eq!(status, 200, "{bank}");
    assert_eq!(bank["state"], "decommissioned");
    let (status, _) = call(
        &app,
        Method::POST,
        &path,
        &admin,
        Some(json!({"reason": "again"})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = call(
        &app,
        Method::POST,
        &format!("/api/v1/locker-banks/{}/decommission", Uuid::now_v7()),
        &admin,
        Some(json!({"reason": "x"})),
    )
    .await;
    assert_eq!(status, 404);

    // Back in service: a reset (admins only) makes it `registered` again.
    let reset = format!("/api/v1/locker-banks/{bank_id}/reset-provisioning");
    let (status, _) = call(
        &app,
        Method::POST,
        &reset,
        &user,
        Some(json!({"reason": "x"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, bank) = call(
        &app,
        Method::POST,
        &reset,
        &admin,
        Some(json!({"reason": "back in service"})),
    )
    .await;
    assert_eq!(status, 200, "{bank}");
    assert_eq!(bank["state"], "registered");
    let (status, _) = call(
        &app,
        Method::POST,
        &reset,
        &admin,
        Some(json!({"reason": "again"})),
    )
    .await;
    assert_eq!(status, 409, "nothing left to reset");
    app.stop().await;
}

/// Publishes one payload as the locker `creds` (a fresh connection that
/// may send packets of any size), and waits for the broker's PUBACK or
/// for the broker to drop the connection. True when acknowledged.
async fn publish_once(creds: &Credentials, port: u16, topic: &str, payload: Vec<u8>) -> bool {
    let mut opts = MqttOptions::new(creds.username.clone(), "127.0.0.1", port);
    opts.set_credentials(creds.username.clone(), creds.password.clone());
    opts.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 8);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .expect("queue");
    let acked = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = client.try_disconnect();
    acked
}

/// Issue 12, fault 1: a locker's oversize result was a poison message
/// (the bridge's client refused the packet, reconnected, got it again
/// from its persistent session, forever) and no other locker was served.
#[tokio::test]
async fn an_oversize_result_is_refused_and_the_fleet_goes_on() {
    let broker = RepoBroker::start().await;
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = ServeConfig::for_tests(&db.url, db.dir.clone());
    config.mqtt_url = Some(lockstep_server::Secret::new(format!(
        "mqtt://lockstep:{BRIDGE_PASSWORD}@127.0.0.1:{}",
        broker.dynsec_port
    )));
    let app = start(config).await;
    // The server refuses the 5 and 10 KiB results it gets.
    oversize_flood(&app, broker.lockers(), broker.provisioning(), 2).await;
    app.stop().await;
}

/// The same flood on the embedded broker, which also refuses (and counts)
/// the two packets over its 64 KiB.
#[tokio::test]
async fn an_oversize_result_is_refused_on_the_embedded_broker_too() {
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = ServeConfig::for_tests(&db.url, db.dir.clone());
    let port = free_port();
    config.mqtt = MqttMode::Embedded;
    config.mqtt_embedded_addr = ([127, 0, 0, 1], port).into();
    let app = start(config).await;
    let at = Endpoint {
        host: "127.0.0.1".into(),
        port,
        username: Some("provisioning".into()),
        password: Some("provisioning-test-password".into()),
    };
    let lockers = Endpoint {
        username: None,
        password: None,
        ..at.clone()
    };
    oversize_flood(&app, lockers, at, 4).await;
    app.stop().await;
}

/// Results of 5 KiB, 10 KiB, 100 KiB and 1 MiB from locker A; then an open
/// on locker B ends `opened`. `refusals`: how many `mqtt_oversize` at least.
async fn oversize_flood(app: &TestApp, lockers: Endpoint, provisioning: Endpoint, refusals: u64) {
    let admin = admin_of(app).await;
    let tag = Uuid::now_v7().simple().to_string();
    let (sa, sb) = (format!("BIG-A-{tag}"), format!("BIG-B-{tag}"));
    let a = bank(app, &admin, &sa).await;
    let b = bank(app, &admin, &sb).await;
    let creds_a = provision(&provisioning, &identity(&sa), Duration::from_secs(20))
        .await
        .expect("A provisioned");
    let creds_b = provision(&provisioning, &identity(&sb), Duration::from_secs(20))
        .await
        .expect("B provisioned");
    let mut locker_b = run(
        &lockers,
        creds_b,
        Behaviour::default(),
        Arc::new(Stats::default()),
    );
    locker_b
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("B ready");
    await_bank_state(app, &admin, b.id, "provisioned").await;

    let oversize_before = rejections(app, "mqtt_oversize").await;
    let topic = format!("locker/{}/status", a.id);
    let mut acked = Vec::new();
    for kib in [5usize, 10, 100, 1024] {
        let filler = "e".repeat(kib * 1024);
        let payload = format!(
            r#"{{"v":1,"command_id":"{}","result":"action_failed","error":"{filler}"}}"#,
            Uuid::now_v7()
        );
        acked.push((
            kib,
            publish_once(&creds_a, lockers.port, &topic, payload.into_bytes()).await,
        ));
    }
    // The broker takes what fits its 64 KiB packets and drops the locker
    // that sends more; the server refuses what it got, by size.
    assert_eq!(
        acked,
        vec![(5, true), (10, true), (100, false), (1024, false)],
        "the broker's limit"
    );
    await_rejection(app, "mqtt_oversize", oversize_before + refusals - 1).await;

    // And the fleet goes on: B's open ends opened.
    let d = override_open(app, &admin, b.compartments[0].id, "after a flood").await;
    let mut feed = app.services.log_tail.subscribe();
    await_status(app, &mut feed, &admin, d.command_id, "opened").await;
    locker_b.stop();
}
