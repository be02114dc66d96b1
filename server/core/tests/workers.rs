//! The workers under failure: a gateway that hangs, panics or errors on
//! some sends, and the stall report (a worker loop that panics: see
//! `worker_panics.rs`). Every
//! command still ends final within its timeout, and the others keep
//! flowing. On SQLite and (with `LOCKSTEP_TEST_DATABASE_URL`) PostgreSQL.

mod support;

use std::{sync::Arc, time::Duration};

use lockstep_core::{
    db::Db,
    eventstore::events::Actor,
    eventstore::outbox,
    identity::accounts::Role,
    identity::caller::Caller,
    identity::throttle::ThrottleConfig,
    lockers::{self, NewBank, NewCompartment},
    now_ms,
    opens::{self, OpenCommandInput},
    services::{CoreSettings, Services},
    testing::fresh_database,
    workers,
};
use support::{settings, world, Behaviour, Scripted};

/// A gateway that never answers one locker's sends: the attempt is cut
/// off at the deadline, retried, and the command ends `failed` within the
/// open timeout, while the other commands are sent meanwhile.
async fn a_hung_send_ends_final(settings: CoreSettings) {
    let gateway = Arc::new(Scripted::new(&[(1, Behaviour::Hang)]));
    let w = world(gateway.clone(), settings).await;
    let hung = w.open(1).await;
    for id in [w.open(2).await, w.open(3).await] {
        assert_eq!(
            w.until(id, &["sent"], Duration::from_secs(5)).await.0,
            "sent"
        );
    }
    assert_eq!(w.status(hung).await.0, "accepted", "still waiting");
    let within = settings.open_timeout + Duration::from_secs(3);
    let (status, reason) = w.until(hung, &["failed"], within).await;
    assert_eq!(status, "failed");
    assert!(
        matches!(reason.as_deref(), Some("timeout") | Some("send_failed")),
        "{reason:?}"
    );
    assert!(
        gateway.attempts(hung) >= 2,
        "the hung attempt was given up and retried"
    );
    let late = w.open(4).await;
    assert_eq!(
        w.until(late, &["sent"], Duration::from_secs(5)).await.0,
        "sent"
    );
    w.stop().await;
}

/// Cut off by the gateway deadline (the wait for PUBACK).
#[tokio::test]
async fn a_hung_gateway_call_is_cut_off_at_the_gateway_deadline() {
    a_hung_send_ends_final(settings(Duration::from_secs(3))).await;
}

/// Cut off by the job deadline, which also covers a job stuck anywhere
/// else: the job's task is aborted and its row released.
#[tokio::test]
async fn a_hung_job_is_aborted_at_the_job_deadline() {
    a_hung_send_ends_final(CoreSettings {
        gateway_deadline: Duration::from_secs(3600),
        ..settings(Duration::from_secs(3))
    })
    .await;
}

/// A gateway that panics: the job is retried, then dead-lettered, and the
/// command ends `failed/send_failed`; one that panics once is sent on the
/// retry; an erroring one ends dead as well. Healthy sends flow meanwhile.
#[tokio::test]
async fn panicking_and_erroring_sends_end_final_and_the_others_keep_flowing() {
    let gateway = Arc::new(Scripted::new(&[
        (1, Behaviour::Panic),
        (2, Behaviour::PanicOnce),
        (3, Behaviour::Error),
    ]));
    // A long open timeout, so the outbox's own verdict is what ends them.
    let w = world(gateway.clone(), settings(Duration::from_secs(120))).await;
    let (_, _, dead_before) = outbox::counts(&w.s.db).await.expect("counts");
    let panics = w.open(1).await;
    let once = w.open(2).await;
    let errors = w.open(3).await;
    let healthy = w.open(4).await;
    assert_eq!(
        w.until(healthy, &["sent"], Duration::from_secs(5)).await.0,
        "sent"
    );
    assert_eq!(
        w.until(once, &["sent"], Duration::from_secs(5)).await.0,
        "sent"
    );
    assert_eq!(gateway.attempts(once), 2, "sent on its retry");
    // 5 attempts with 0.5 + 1 + 2 + 4 s of backoff between them.
    for id in [panics, errors] {
        let (status, reason) = w.until(id, &["failed"], Duration::from_secs(15)).await;
        assert_eq!(
            (status.as_str(), reason.as_deref()),
            ("failed", Some("send_failed"))
        );
        assert_eq!(gateway.attempts(id), outbox::MAX_ATTEMPTS as usize);
    }
    let (pending, _, dead) = outbox::counts(&w.s.db).await.expect("counts");
    assert_eq!((pending, dead - dead_before), (0, 2));
    let late = w.open(5).await;
    assert_eq!(
        w.until(late, &["sent"], Duration::from_secs(5)).await.0,
        "sent"
    );
    w.stop().await;
}

/// Every send hangs for longer than the open timeout (deadlines far off):
/// the timer worker runs on its own and fails the command with `timeout`.
#[tokio::test]
async fn the_timer_worker_fires_while_every_send_hangs() {
    let gateway = Arc::new(Scripted::new(&[(1, Behaviour::Hang), (2, Behaviour::Hang)]));
    let settings = CoreSettings {
        open_timeout: Duration::from_secs(1),
        gateway_deadline: Duration::from_secs(3600),
        job_deadline: Duration::from_secs(3600),
        ..Default::default()
    };
    let w = world(gateway, settings).await;
    let ids = [w.open(1).await, w.open(2).await];
    for id in ids {
        let (status, reason) = w.until(id, &["failed"], Duration::from_secs(5)).await;
        assert_eq!(
            (status.as_str(), reason.as_deref()),
            ("failed", Some("timeout"))
        );
    }
    w.stop().await;
}

/// The stall report: a job due and unclaimed, a timer due and unfired, and
/// a loop that stopped ticking are each named once past `stall_after`.
#[tokio::test]
async fn the_stall_report_names_overdue_work() {
    let t = fresh_database().await;
    let db = Db::open(&t.url).await.expect("db");
    // No workers run here: the work just waits, as it did in issue 10.
    let s = Services::new(db.clone(), ThrottleConfig::default())
        .with_settings(settings(Duration::from_secs(20)));
    let admin = lockstep_core::testing::add_user(&db, "admin@a.io", Role::Admin, "A").await;
    let admin = Caller::new(admin.clone(), Actor::User { id: admin.id });
    let bank = lockers::register_bank(
        &s,
        &admin,
        NewBank {
            serial: "SN-STALL".into(),
            name: "Lobby".into(),
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
    let t0 = now_ms();
    opens::request_open(
        &s,
        &admin,
        OpenCommandInput {
            compartment_id: bank.compartments[0].id,
            override_: true,
            reason: Some("test".into()),
            ..Default::default()
        },
        t0,
    )
    .await
    .expect("open");
    let fresh = workers::health(&s, t0 + 1_000).await.expect("health");
    assert!(!fresh.stalled(), "{:?}", fresh.stalls);
    // 25 s later the send is overdue; the timeout (20 s) is 5 s overdue.
    let later = workers::health(&s, t0 + 25_000).await.expect("health");
    assert!(later.outbox_oldest_pending_secs >= 24.0);
    assert_eq!(later.timers_overdue, 1);
    assert_eq!(later.stalls.len(), 2, "{:?}", later.stalls);
    assert!(later.stalls[0].contains("outbox job"), "{:?}", later.stalls);
    assert!(later.stalls[1].contains("timer"), "{:?}", later.stalls);
    drop(t);
}
