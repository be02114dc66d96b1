//! The MQTT bridge against a real Mosquitto (started by the test on a free
//! port): commands out at QoS 1, `sent` on PUBACK, results in, bad input
//! refused and counted.

use std::{process::Stdio, time::Duration};

use lockstep_core::{
    eventstore::events::Actor,
    identity::accounts::Role,
    identity::caller::Caller,
    lockers::{self, NewBank, NewCompartment},
    now_ms,
    opens::{self, OpenCommandInput},
};
use lockstep_server::ServeConfig;
use lockstep_wire::mqtt::parse_command;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::helpers::*;

struct Broker {
    child: std::process::Child,
    port: u16,
    _dir: tempdir::Dir,
}

pub(crate) mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn mosquitto() -> Broker {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let dir = std::env::temp_dir().join(format!("lockstep-mosquitto-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .expect("conf");
    // The guard owns the process: dropping it (also on panic) kills and reaps it.
    let broker = Broker {
        child: std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed"),
        port,
        _dir: tempdir::Dir(dir),
    };
    // Ready when it accepts connections (bounded).
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return broker;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(broker);
    panic!("mosquitto did not start on port {port}");
}

/// A locker: subscribed to its command topic; forwards what it receives.
async fn locker(port: u16, bank: Uuid) -> (AsyncClient, mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut opts = MqttOptions::new(
        format!("locker-{}", Uuid::now_v7().simple()),
        "127.0.0.1",
        port,
    );
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(opts, 32);
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    client
        .subscribe(format!("locker/{bank}/command"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(event) = eventloop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(s) = subscribed_tx.take() {
                        let _ = s.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send(p.payload.to_vec());
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("SUBACK in time")
        .expect("subscribed");
    (client, rx)
}

/// Waits on the committed-log feed until the command has `status`.
pub(crate) async fn await_status(
    app: &TestApp,
    rx: &mut tokio::sync::broadcast::Receiver<lockstep_core::eventstore::channels::Appended>,
    admin: &Caller,
    command_id: Uuid,
    status: &str,
) {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let now = opens::get_open_request(&app.services, admin, command_id)
                .await
                .expect("q")
                .expect("visible");
            if now.status.as_str() == status {
                return;
            }
            let _ = rx.recv().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("command {command_id} never reached {status}"));
}

#[tokio::test]
async fn open_goes_out_over_mqtt_and_the_locker_result_comes_back() {
    let broker = mosquitto().await;
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = ServeConfig::for_tests(&db.url, db.dir.clone());
    config.mqtt_url = Some(lockstep_server::Secret::new(format!(
        "mqtt://127.0.0.1:{}",
        broker.port
    )));
    let app = start(config).await;
    let mut feed = app.services.log_tail.subscribe();

    let admin_user =
        lockstep_core::identity::accounts::find_user_by_email(&app.services.db, ADMIN_EMAIL)
            .await
            .expect("q")
            .expect("admin");
    let admin = Caller::new(admin_user.clone(), Actor::User { id: admin_user.id });
    let bank = lockers::register_bank(
        &app.services,
        &admin,
        NewBank {
            serial: "MQ-1".into(),
            name: "Mqtt".into(),
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
    let uma = add_user(&app, "uma@lockstep.test", Role::User, "Default").await;
    let user = Caller::new(uma.clone(), Actor::User { id: uma.id });
    lockers::grant_access(
        &app.services,
        &admin,
        bank.compartments[0].id,
        "uma@lockstep.test",
        None,
        None,
    )
    .await
    .expect("grant");
    let (locker_client, mut commands) = locker(broker.port, bank.id).await;

    // A heartbeat brings the bank online (an event on the tenant's channel).
    locker_client
        .publish(
            format!("locker/{}/state", bank.id),
            QoS::AtLeastOnce,
            false,
            r#"{"v":1,"firmware":"1.2.3"}"#,
        )
        .await
        .expect("heartbeat");
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let b = lockers::get_bank(&app.services, admin_user.tenant_id, bank.id)
                .await
                .expect("q")
                .expect("bank");
            if b.online == Some(true) {
                return;
            }
            let _ = feed.recv().await;
        }
    })
    .await
    .expect("the bank came online");

    // Open → the locker gets the command at QoS 1 → PUBACK → `sent`.
    // The MQTT flow's figures, read as deltas (other tests share the
    // recorder).
    let flow = [
        "lockstep_mqtt_messages_total{direction=\"out\",kind=\"command\"}",
        "lockstep_mqtt_messages_total{direction=\"in\",kind=\"result\"}",
        "lockstep_mqtt_command_round_trip_seconds_count",
        "lockstep_open_commands_total{status=\"opened\",reason=\"-\"}",
    ];
    let mut before = Vec::new();
    for series in flow {
        before.push(metric(&app, series).await);
    }
    let d = opens::request_open(
        &app.services,
        &user,
        OpenCommandInput {
            compartment_id: bank.compartments[0].id,
            ..Default::default()
        },
        now_ms(),
    )
    .await
    .expect("open");
    let payload = tokio::time::timeout(Duration::from_secs(15), commands.recv())
        .await
        .expect("command in time")
        .expect("command");
    let command = parse_command(&payload).expect("a well-formed command");
    assert_eq!(
        (
            command.command_id,
            command.action.as_str(),
            command.compartment
        ),
        (d.command_id, "open", 1)
    );
    assert!(command.expires_at > command.issued_at);
    await_status(&app, &mut feed, &admin, d.command_id, "sent").await;

    // The locker answers → `opened`.
    let status_topic = format!("locker/{}/status", bank.id);
    let done = format!(
        r#"{{"v":1,"command_id":"{}","result":"action_completed"}}"#,
        d.command_id
    );
    locker_client
        .publish(&status_topic, QoS::AtLeastOnce, false, done.clone())
        .await
        .expect("publish");
    await_status(&app, &mut feed, &admin, d.command_id, "opened").await;
    // Counted just after the commits the status came from: wait for them.
    for (series, was) in flow.iter().zip(&before) {
        let counted = async {
            while metric(&app, series).await < was + 1.0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), counted)
            .await
            .unwrap_or_else(|_| panic!("{series} was not counted (was {was})"));
    }
    let scraped = reqwest::get(app.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for gauge in ["lockstep_mqtt_connected", "lockstep_lockers_online"] {
        assert!(scraped.contains(gauge), "{gauge} in /metrics");
    }

    let not_json = rejections(&app, "mqtt_not_json").await;
    // A duplicate result changes nothing (checked once a later bad message was handled).
    let events_before: i64 = count_events(&app, d.command_id).await;
    locker_client
        .publish(&status_topic, QoS::AtLeastOnce, false, done)
        .await
        .expect("dup");
    locker_client
        .publish(&status_topic, QoS::AtLeastOnce, false, "{not json")
        .await
        .expect("bad");
    await_rejection(&app, "mqtt_not_json", not_json).await;
    assert_eq!(
        count_events(&app, d.command_id).await,
        events_before,
        "the duplicate appended nothing"
    );

    // Refused: unknown version, a command of this bank on another locker's topic, an unknown command.
    let unknown_version = rejections(&app, "mqtt_unknown_version").await;
    let wrong_locker = rejections(&app, "mqtt_wrong_locker").await;
    let unknown_command = rejections(&app, "mqtt_unknown_command").await;
    locker_client
        .publish(
            &status_topic,
            QoS::AtLeastOnce,
            false,
            format!(
                r#"{{"v":9,"command_id":"{}","result":"action_completed"}}"#,
                d.command_id
            ),
        )
        .await
        .expect("v9");
    await_rejection(&app, "mqtt_unknown_version", unknown_version).await;
    let other = format!("locker/{}/status", Uuid::now_v7());
    locker_client
        .publish(
            &other,
            QoS::AtLeastOnce,
            false,
            format!(
                r#"{{"v":1,"command_id":"{}","result":"action_failed"}}"#,
                d.command_id
            ),
        )
        .await
        .expect("wrong");
    await_rejection(&app, "mqtt_wrong_locker", wrong_locker).await;
    locker_client
        .publish(
            &status_topic,
            QoS::AtLeastOnce,
            false,
            format!(
                r#"{{"v":1,"command_id":"{}","result":"action_completed"}}"#,
                Uuid::now_v7()
            ),
        )
        .await
        .expect("unknown");
    await_rejection(&app, "mqtt_unknown_command", unknown_command).await;
    // A result for a command that was denied (never sent) is refused, not
    // taken for a repeat (it would be acknowledged and counted as one).
    let denied = opens::request_open(
        &app.services,
        &user,
        OpenCommandInput {
            compartment_id: bank.compartments[1].id,
            ..Default::default()
        },
        now_ms(),
    )
    .await
    .expect("open without a grant");
    assert_eq!(denied.status, lockstep_wire::OpenStatus::Denied);
    let not_sent = rejections(&app, "mqtt_command_not_sent").await;
    locker_client
        .publish(
            &status_topic,
            QoS::AtLeastOnce,
            false,
            format!(
                r#"{{"v":1,"command_id":"{}","result":"action_completed"}}"#,
                denied.command_id
            ),
        )
        .await
        .expect("denied result");
    await_rejection(&app, "mqtt_command_not_sent", not_sent).await;
    assert_eq!(
        opens::get_open_request(&app.services, &admin, denied.command_id)
            .await
            .expect("q")
            .expect("v")
            .status,
        lockstep_wire::OpenStatus::Denied
    );
    assert_eq!(
        opens::get_open_request(&app.services, &admin, d.command_id)
            .await
            .expect("q")
            .expect("v")
            .status,
        lockstep_wire::OpenStatus::Opened
    );

    // A failure result → `failed` with `device_error`.
    let d2 = opens::request_open(
        &app.services,
        &user,
        OpenCommandInput {
            compartment_id: bank.compartments[0].id,
            ..Default::default()
        },
        now_ms(),
    )
    .await
    .expect("open 2");
    let second = parse_command(
        &tokio::time::timeout(Duration::from_secs(15), commands.recv())
            .await
            .expect("in time")
            .expect("cmd"),
    )
    .expect("cmd");
    assert_eq!(second.command_id, d2.command_id);
    await_status(&app, &mut feed, &admin, d2.command_id, "sent").await;
    locker_client
        .publish(
            &status_topic,
            QoS::AtLeastOnce,
            false,
            format!(
                r#"{{"v":1,"command_id":"{}","result":"action_failed","error":"jammed"}}"#,
                d2.command_id
            ),
        )
        .await
        .expect("failed");
    await_status(&app, &mut feed, &admin, d2.command_id, "failed").await;
    let v = opens::get_open_request(&app.services, &admin, d2.command_id)
        .await
        .expect("q")
        .expect("v");
    assert_eq!(v.failure_reason.map(|r| r.as_str()), Some("device_error"));
    app.stop().await;
    drop(broker);
}

async fn count_events(app: &TestApp, aggregate: Uuid) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM stored_events WHERE aggregate_uuid = $1")
        .bind(aggregate.to_string())
        .fetch_one(&app.services.db.pool)
        .await
        .expect("count")
        .try_get("n")
        .expect("n")
}
