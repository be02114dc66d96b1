//! The event core's guarantees, on SQLite and (with
//! `LOCKSTEP_TEST_DATABASE_URL`) PostgreSQL.

use lockstep_core::opens::{FailureReason, OpenStatus};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use lockstep_core::{
    db::Db,
    error::CoreError,
    eventstore::channels::{self, Channel},
    eventstore::events::{self, Actor, DomainEvent},
    eventstore::outbox,
    eventstore::projections::Projector,
    eventstore::replay,
    eventstore::store,
    gateway::RecordingGateway,
    identity::accounts::{Role, User},
    identity::caller::Caller,
    identity::throttle::ThrottleConfig,
    lockers::{self, NewBank, NewCompartment},
    now_ms,
    opens::{self, OpenCommandInput, ResultOutcome},
    reactors, records,
    services::{CoreSettings, Services},
    testing::{fresh_database, TestDb},
    workers,
};
use sqlx::Row;
use uuid::Uuid;

struct World {
    _t: TestDb,
    s: Services,
    gateway: Arc<RecordingGateway>,
    admin: Caller,
    user: Caller,
    bank: lockers::BankView,
}

fn services(db: Db, gateway: Arc<RecordingGateway>) -> Services {
    Services::new(db, ThrottleConfig::default())
        .with_settings(CoreSettings {
            open_timeout: Duration::from_secs(20),
            ..Default::default()
        })
        .with_gateway(gateway)
}

async fn user(db: &Db, email: &str, role: Role, tenant: &str) -> User {
    lockstep_core::testing::add_user(db, email, role, tenant).await
}

fn caller(u: &User) -> Caller {
    Caller::new(u.clone(), Actor::User { id: u.id })
}

async fn world() -> World {
    let t = fresh_database().await;
    let db = Db::open(&t.url).await.expect("db");
    let gateway = Arc::new(RecordingGateway::default());
    let s = services(db.clone(), gateway.clone());
    let admin = caller(&user(&db, "admin@a.io", Role::Admin, "A").await);
    let user = caller(&user(&db, "uma@a.io", Role::User, "A").await);
    let bank = lockers::register_bank(
        &s,
        &admin,
        NewBank {
            serial: format!("SN-{}", Uuid::now_v7().simple()),
            name: "Lobby".into(),
            location: Some("Ground floor".into()),
            compartments: (1..=4)
                .map(|n| NewCompartment {
                    number: n,
                    size: "medium".into(),
                    label: None,
                })
                .collect(),
        },
    )
    .await
    .expect("bank");
    lockers::grant_access(&s, &admin, bank.compartments[0].id, "uma@a.io", None, None)
        .await
        .expect("grant");
    World {
        _t: t,
        s,
        gateway,
        admin,
        user,
        bank,
    }
}

/// The `n` of a `SELECT COUNT(*) AS n …`.
async fn count(w: &World, q: &str) -> i64 {
    sqlx::query(q)
        .fetch_one(&w.s.db.pool)
        .await
        .expect("q")
        .try_get::<i64, _>("n")
        .expect("n")
}

fn open(c: Uuid) -> OpenCommandInput {
    OpenCommandInput {
        compartment_id: c,
        ..Default::default()
    }
}

async fn status(w: &World, id: Uuid) -> opens::OpenRequestView {
    opens::get_open_request(&w.s, &w.admin, id)
        .await
        .expect("q")
        .expect("visible")
}

#[tokio::test]
async fn the_open_flow_walks_its_lifecycle() {
    let w = world().await;
    let c = w.bank.compartments[0].id;
    let d = opens::request_open(&w.s, &w.user, open(c), now_ms())
        .await
        .expect("open");
    assert_eq!(d.status, OpenStatus::Accepted);
    assert_eq!(status(&w, d.command_id).await.status, OpenStatus::Accepted);
    assert_eq!(
        workers::run_outbox_once(&w.s, now_ms())
            .await
            .expect("outbox"),
        1
    );
    let sent = w.gateway.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].command_id, d.command_id);
    assert_eq!(sent[0].compartment, 1);
    assert_eq!(status(&w, d.command_id).await.status, OpenStatus::Sent);
    assert_eq!(
        opens::record_result(&w.s, d.command_id, true, None, now_ms())
            .await
            .expect("r"),
        ResultOutcome::Applied
    );
    let v = status(&w, d.command_id).await;
    assert_eq!(v.status, OpenStatus::Opened);
    assert!(v.authorized_at.is_some() && v.sent_at.is_some() && v.opened_at.is_some());
    // The compartment read model shows the latest command.
    let bank = lockers::get_bank(&w.s, w.admin.user.tenant_id, w.bank.id)
        .await
        .expect("q")
        .expect("bank");
    assert_eq!(
        bank.compartments[0].latest_status.map(|r| r.as_str()),
        Some("opened")
    );
    assert_eq!(bank.compartments[0].latest_command_id, Some(d.command_id));
    // A duplicate result changes nothing.
    assert_eq!(
        opens::record_result(&w.s, d.command_id, true, None, now_ms())
            .await
            .expect("r"),
        ResultOutcome::Duplicate
    );
    // The ended command's deadline is gone: nothing left to fire.
    let timers: i64 = sqlx::query("SELECT COUNT(*) AS n FROM timers")
        .fetch_one(&w.s.db.pool)
        .await
        .expect("timers")
        .try_get("n")
        .expect("n");
    assert_eq!(timers, 0);
    assert_eq!(
        reactors::fire_due_timers(&w.s, now_ms() + 600_000)
            .await
            .expect("timers"),
        0
    );

    // The user's channel shows accepted → sent → opened with seqs in order.
    let since = channels::since(&w.s.db, &Channel::User(w.user.user.id), 0, 100)
        .await
        .expect("since");
    let statuses: Vec<_> = since
        .events
        .iter()
        .filter(|e| e.event == "CompartmentOpenStatusUpdated")
        .map(|e| e.data["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(statuses, ["accepted", "sent", "opened"]);
    let seqs: Vec<_> = since.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=since.seq).collect::<Vec<_>>());
    assert!(since.events.iter().all(|e| e.meta.replay && e.v == 1));
    assert!(since
        .events
        .iter()
        .filter(|e| e.event == "CompartmentOpenStatusUpdated")
        .all(|e| e.correlation_id == d.command_id));
}

#[tokio::test]
async fn denials_carry_reasons_and_overrides_need_admin_and_reason() {
    let w = world().await;
    let no_grant = w.bank.compartments[1].id;
    let d = opens::request_open(&w.s, &w.user, open(no_grant), now_ms())
        .await
        .expect("open");
    assert_eq!(
        (d.status.as_str(), d.reason.map(|r| r.as_str())),
        ("denied", Some("no_access"))
    );
    assert_eq!(status(&w, d.command_id).await.status, OpenStatus::Denied);
    assert_eq!(
        outbox::counts(&w.s.db).await.expect("c").0,
        0,
        "nothing to send for a denial"
    );

    let expired = w.bank.compartments[2].id;
    let now = now_ms();
    lockers::grant_access(
        &w.s,
        &w.admin,
        expired,
        "uma@a.io",
        Some(now - 20_000),
        Some(now - 10_000),
    )
    .await
    .expect("grant");
    let d = opens::request_open(&w.s, &w.user, open(expired), now)
        .await
        .expect("open");
    assert_eq!(d.reason.map(|r| r.as_str()), Some("access_expired"));

    let mut o = open(no_grant);
    o.override_ = true;
    assert!(matches!(
        opens::request_open(&w.s, &w.user, o.clone(), now).await,
        Err(CoreError::Forbidden(_))
    ));
    assert!(matches!(
        opens::request_open(&w.s, &w.admin, o.clone(), now).await,
        Err(CoreError::Invalid(_))
    ));
    o.reason = Some("courier locked out".into());
    let d = opens::request_open(&w.s, &w.admin, o, now)
        .await
        .expect("override");
    assert_eq!(d.status, OpenStatus::Accepted);
    let v = status(&w, d.command_id).await;
    assert!(v.override_);
    assert_eq!(v.actor_id, w.admin.user.id);
    assert_eq!(v.override_reason.as_deref(), Some("courier locked out"));
}

#[tokio::test]
async fn revoked_access_is_denied() {
    let w = world().await;
    let c = w.bank.compartments[0].id;
    let grants = lockers::list_grants(&w.s, w.admin.user.tenant_id, c)
        .await
        .expect("grants");
    lockers::revoke_access(&w.s, &w.admin, c, grants[0].id)
        .await
        .expect("revoke");
    // The revocation reaches the user and the bank's channel (the admin
    // panel's view of the bank), as the grant did.
    for channel in [
        Channel::User(w.user.user.id),
        Channel::LockerBank(w.bank.id),
    ] {
        let since = channels::since(&w.s.db, &channel, 0, 100)
            .await
            .expect("since");
        assert_eq!(
            since
                .events
                .iter()
                .filter(|e| e.event == "AccessRevoked")
                .count(),
            1,
            "{channel}"
        );
    }
    let d = opens::request_open(&w.s, &w.user, open(c), now_ms())
        .await
        .expect("open");
    assert_eq!(d.reason.map(|r| r.as_str()), Some("no_access"));
    assert!(matches!(
        lockers::revoke_access(&w.s, &w.admin, c, grants[0].id).await,
        Err(CoreError::NotFound)
    ));
}

#[tokio::test]
async fn the_idempotency_key_returns_the_same_command() {
    let w = world().await;
    let mut o = open(w.bank.compartments[0].id);
    o.idempotency_key = Some("tap-1".into());
    let a = opens::request_open(&w.s, &w.user, o.clone(), now_ms())
        .await
        .expect("a");
    let b = opens::request_open(&w.s, &w.user, o, now_ms())
        .await
        .expect("b");
    assert_eq!(a, b);
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM open_requests")
        .fetch_one(&w.s.db.pool)
        .await
        .expect("q")
        .try_get("n")
        .expect("n");
    assert_eq!(n, 1, "never a second open");
}

#[tokio::test]
async fn concurrent_commands_on_one_aggregate_lose_nothing() {
    let w = world().await;
    let c = w.bank.compartments[3].id;
    for i in 0..6 {
        user(&w.s.db, &format!("u{i}@a.io"), Role::User, "A").await;
    }
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (s, admin) = (w.s.clone(), w.admin.clone());
        tasks.push(tokio::spawn(async move {
            lockers::grant_access(&s, &admin, c, &format!("u{i}@a.io"), None, None).await
        }));
    }
    for t in tasks {
        t.await
            .expect("join")
            .expect("every grant lands after bounded retries");
    }
    let mut conn = w.s.db.pool.acquire().await.expect("conn");
    let stream = events::load_stream(&mut conn, c).await.expect("stream");
    let versions: Vec<_> = stream.iter().map(|e| e.aggregate_version).collect();
    assert_eq!(
        versions,
        (1..=6).collect::<Vec<_>>(),
        "no lost or duplicated events"
    );
    assert_eq!(
        lockers::list_grants(&w.s, w.admin.user.tenant_id, c)
            .await
            .expect("g")
            .len(),
        6
    );
}

#[tokio::test]
async fn a_stale_expected_version_is_a_typed_conflict() {
    let w = world().await;
    let id = Uuid::now_v7();
    let meta = w.admin.metadata();
    let mut tx = store::begin_write(&w.s.db).await.expect("tx");
    events::append(
        &mut tx,
        "test",
        id,
        0,
        vec![DomainEvent::CompartmentOpened { command_id: id }],
        &meta,
        now_ms(),
    )
    .await
    .expect("first");
    tx.commit().await.expect("commit");
    let mut tx = store::begin_write(&w.s.db).await.expect("tx");
    let err = events::append(
        &mut tx,
        "test",
        id,
        0,
        vec![DomainEvent::CompartmentOpened { command_id: id }],
        &meta,
        now_ms(),
    )
    .await
    .expect_err("stale");
    assert!(
        matches!(err, CoreError::VersionConflict { expected: 0, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_failing_projector_stores_nothing() {
    let w = world().await;
    let before = (
        count(&w, "SELECT COUNT(*) AS n FROM stored_events").await,
        count(&w, "SELECT COUNT(*) AS n FROM channel_log").await,
    );
    // The same serial again: the locker_banks projector's unique index fails.
    let bank_id = Uuid::now_v7();
    let event = DomainEvent::LockerBankRegistered {
        bank_id,
        tenant_id: w.admin.user.tenant_id,
        serial: w.bank.serial.clone(),
        name: "Copy".into(),
        location: None,
        compartments: vec![],
    };
    let mut tx = store::begin_write(&w.s.db).await.expect("tx");
    let err = store::append_live(
        &mut tx,
        w.s.mode(),
        "locker_bank",
        bank_id,
        0,
        vec![event],
        &w.admin.metadata(),
        now_ms(),
    )
    .await;
    assert!(err.is_err());
    drop(tx);
    let after = (
        count(&w, "SELECT COUNT(*) AS n FROM stored_events").await,
        count(&w, "SELECT COUNT(*) AS n FROM channel_log").await,
    );
    assert_eq!(
        before, after,
        "neither the event nor its envelopes were kept"
    );
    // And through the command: a clear conflict.
    let again = lockers::register_bank(
        &w.s,
        &w.admin,
        NewBank {
            serial: w.bank.serial.clone(),
            name: "x".into(),
            location: None,
            compartments: vec![NewCompartment {
                number: 1,
                size: "small".into(),
                label: None,
            }],
        },
    )
    .await;
    assert!(matches!(again, Err(CoreError::Conflict(_))));
}

#[tokio::test]
async fn the_outbox_survives_a_restart_and_runs_exactly_once() {
    let w = world().await;
    let d = opens::request_open(&w.s, &w.user, open(w.bank.compartments[0].id), now_ms())
        .await
        .expect("open");
    // "Crash" between commit and reactor: nothing ran, the job is pending.
    assert_eq!(outbox::counts(&w.s.db).await.expect("c"), (1, 0, 0));
    assert!(w.gateway.sent().is_empty());
    // A new process on the same database.
    let gateway = Arc::new(RecordingGateway::default());
    let restarted = services(w.s.db.clone(), gateway.clone());
    assert_eq!(
        workers::run_outbox_once(&restarted, now_ms())
            .await
            .expect("run"),
        1
    );
    assert_eq!(
        workers::run_outbox_once(&restarted, now_ms() + 60_000)
            .await
            .expect("run"),
        0
    );
    assert_eq!(gateway.sent().len(), 1, "sent exactly once");
    assert_eq!(outbox::counts(&w.s.db).await.expect("c"), (0, 1, 0));
    assert_eq!(status(&w, d.command_id).await.status, OpenStatus::Sent);
}

#[tokio::test]
async fn two_processes_claiming_the_outbox_never_share_a_job() {
    let w = world().await;
    let compartment = w.bank.compartments[0].id;
    for _ in 0..40 {
        let d = opens::request_open(&w.s, &w.user, open(compartment), now_ms())
            .await
            .expect("open");
        assert_eq!(d.status, OpenStatus::Accepted);
    }
    // Two pools on one database stand for two server processes.
    let url = w._t.url.clone();
    let other = Db::open(&url).await.expect("second process");
    let now = now_ms();
    let mut claims = Vec::new();
    for round in 0..4 {
        let (a, b) = tokio::join!(
            outbox::claim_due(&w.s.db, now, 4),
            outbox::claim_due(&other, now, 4)
        );
        let (a, b) = (a.expect("claim a"), b.expect("claim b"));
        assert!(
            !a.is_empty() || !b.is_empty(),
            "round {round} claimed nothing"
        );
        claims.extend(a.into_iter().chain(b).map(|j| j.id));
    }
    let rest = outbox::claim_due(&other, now, 100)
        .await
        .expect("claim rest");
    claims.extend(rest.iter().map(|j| j.id));
    let distinct: std::collections::BTreeSet<i64> = claims.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        claims.len(),
        "a job was claimed twice: {claims:?}"
    );
    assert_eq!(claims.len(), 40, "every job claimed once");
    // Leased: nothing is due again until the lease runs out.
    assert!(outbox::claim_due(&w.s.db, now, 100)
        .await
        .expect("c")
        .is_empty());
}

#[tokio::test]
async fn a_send_that_keeps_failing_ends_dead_and_failed() {
    let w = world().await;
    let d = opens::request_open(&w.s, &w.user, open(w.bank.compartments[0].id), now_ms())
        .await
        .expect("open");
    w.gateway.fail_next(100);
    let mut now = now_ms();
    for _ in 0..outbox::MAX_ATTEMPTS {
        workers::run_outbox_once(&w.s, now).await.expect("run");
        now += 120_000;
    }
    assert_eq!(
        outbox::counts(&w.s.db).await.expect("c").2,
        1,
        "one dead letter"
    );
    let v = status(&w, d.command_id).await;
    assert_eq!(
        (v.status.as_str(), v.failure_reason.map(|r| r.as_str())),
        ("failed", Some("send_failed"))
    );
    let last_error: Option<String> = sqlx::query("SELECT last_error FROM outbox")
        .fetch_one(&w.s.db.pool)
        .await
        .expect("q")
        .try_get("last_error")
        .expect("e");
    assert_eq!(last_error.as_deref(), Some("injected failure"));
}

#[tokio::test]
async fn the_timeout_fails_a_command_even_across_a_restart() {
    let w = world().await;
    let t0 = now_ms();
    let d = opens::request_open(&w.s, &w.user, open(w.bank.compartments[0].id), t0)
        .await
        .expect("open");
    workers::run_outbox_once(&w.s, t0).await.expect("send");
    assert_eq!(
        reactors::fire_due_timers(&w.s, t0 + 19_000)
            .await
            .expect("early"),
        0
    );
    let restarted = services(w.s.db.clone(), Arc::new(RecordingGateway::default()));
    assert_eq!(
        reactors::fire_due_timers(&restarted, t0 + 20_001)
            .await
            .expect("due"),
        1
    );
    assert_eq!(
        reactors::fire_due_timers(&restarted, t0 + 30_000)
            .await
            .expect("again"),
        0,
        "fires once"
    );
    let v = status(&w, d.command_id).await;
    assert_eq!(
        (v.status.as_str(), v.failure_reason.map(|r| r.as_str())),
        ("failed", Some("timeout"))
    );
    // A late result is recorded, shown, and does not flip the status.
    assert_eq!(
        opens::record_result(&w.s, d.command_id, true, None, t0 + 31_000)
            .await
            .expect("late"),
        ResultOutcome::Late
    );
    let v = status(&w, d.command_id).await;
    assert_eq!(
        (v.status.as_str(), v.late_result.as_deref()),
        ("failed", Some("action_completed"))
    );
    assert_eq!(
        opens::record_result(&w.s, d.command_id, true, None, t0 + 32_000)
            .await
            .expect("dup"),
        ResultOutcome::Duplicate
    );
    let unknown = opens::record_result(&w.s, Uuid::now_v7(), true, None, t0).await;
    assert!(matches!(unknown, Err(CoreError::NotFound)));
}

async fn snapshot(db: &Db) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (table, cols, order) in [
        ("locker_banks", "id, tenant_id, serial, name, location, notes, version, edited_at, edited_by, state, online, created_at", "id"),
        ("compartments", "id, bank_id, number, size, label, version, edited_at, edited_by, latest_status, latest_command_id", "id"),
        ("users", "id, name, role, disabled_at, version, edited_at, edited_by", "id"),
        ("grants", "id, compartment_id, user_id, valid_from, valid_until, revoked_at, created_by, created_at, version, edited_at, edited_by", "id"),
        ("open_requests", "command_id, status, denial_reason, failure_reason, late_result, override, override_reason, actor_id, requested_at, authorized_at, denied_at, sent_at, opened_at, failed_at, late_result_at", "command_id"),
    ] {
        let rows = sqlx::query(&format!("SELECT {cols} FROM {table} ORDER BY {order}")).fetch_all(&db.pool).await.expect("q");
        let mut lines = Vec::new();
        for r in rows {
            let mut line = Vec::new();
            for (i, _) in cols.split(", ").enumerate() {
                let v = r.try_get::<Option<String>, _>(i).map(|v| format!("{v:?}")).or_else(|_| r.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}"))).expect("text or int");
                line.push(v);
            }
            lines.push(line.join("|"));
        }
        out.insert(table.to_string(), lines);
    }
    out
}

#[tokio::test]
async fn replay_reproduces_the_read_models_exactly() {
    let w = world().await;
    let now = now_ms();
    let a = opens::request_open(&w.s, &w.user, open(w.bank.compartments[0].id), now)
        .await
        .expect("a");
    workers::run_outbox_once(&w.s, now).await.expect("send");
    opens::record_result(&w.s, a.command_id, false, Some("jammed".into()), now)
        .await
        .expect("failed");
    opens::request_open(&w.s, &w.user, open(w.bank.compartments[1].id), now)
        .await
        .expect("denied");
    let b = opens::request_open(&w.s, &w.user, open(w.bank.compartments[0].id), now)
        .await
        .expect("b");
    reactors::fire_due_timers(&w.s, now + 60_000)
        .await
        .expect("timeout");
    opens::record_result(&w.s, b.command_id, true, None, now + 61_000)
        .await
        .expect("late");
    let g = lockers::list_grants(&w.s, w.admin.user.tenant_id, w.bank.compartments[0].id)
        .await
        .expect("g");
    lockers::revoke_access(&w.s, &w.admin, w.bank.compartments[0].id, g[0].id)
        .await
        .expect("revoke");
    // Edits under the version guard: banks, compartments, accounts.
    let edit = records::BankEdit {
        notes: Some(Some("key at the desk".into())),
        ..Default::default()
    };
    records::edit_bank(&w.s, &w.admin, w.bank.id, 1, edit)
        .await
        .expect("bank edit");
    let edit = records::CompartmentEdit {
        label: Some(Some("Parcels".into())),
        ..Default::default()
    };
    records::edit_compartment(&w.s, &w.admin, w.bank.compartments[1].id, 1, edit)
        .await
        .expect("compartment edit");
    let grant = lockers::grant_access(
        &w.s,
        &w.admin,
        w.bank.compartments[1].id,
        &w.user.user.email,
        None,
        None,
    )
    .await
    .expect("grant");
    let edit = records::GrantEdit {
        valid_until: Some(Some(now + 3_600_000)),
        ..Default::default()
    };
    records::edit_grant(&w.s, &w.admin, grant.id, 1, edit)
        .await
        .expect("grant edit");
    let rows = vec![
        records::ImportRow {
            number: 1,
            size: "xlarge".into(),
            label: None,
        },
        records::ImportRow {
            number: 77,
            size: "small".into(),
            label: Some("Imported".into()),
        },
    ];
    let summary = records::import_compartments(&w.s, &w.admin, w.bank.id, rows)
        .await
        .expect("import");
    assert_eq!((summary.added, summary.updated), (1, 1));
    for (version, disabled) in [(1, true), (2, false), (3, true)] {
        let edit = records::UserEdit {
            disabled: Some(disabled),
            name: Some(format!("Uma {version}")),
            ..Default::default()
        };
        records::edit_user(&w.s, &w.admin, w.user.user.id, version, edit)
            .await
            .expect("user edit");
    }

    let before = snapshot(&w.s.db).await;
    let log_before: i64 = sqlx::query("SELECT COUNT(*) AS n FROM channel_log")
        .fetch_one(&w.s.db.pool)
        .await
        .expect("q")
        .try_get("n")
        .expect("n");
    let mut calls = 0;
    let n = replay::replay(&w.s, &[], |done, total| {
        calls += 1;
        assert!(done <= total);
    })
    .await
    .expect("replay");
    assert!(n > 5 && calls >= 1);
    assert_eq!(
        snapshot(&w.s.db).await,
        before,
        "every read model identical"
    );
    let log_after: i64 = sqlx::query("SELECT COUNT(*) AS n FROM channel_log")
        .fetch_one(&w.s.db.pool)
        .await
        .expect("q")
        .try_get("n")
        .expect("n");
    assert_eq!(log_before, log_after, "replay publishes nothing");
    // One projector alone.
    sqlx::query("UPDATE open_requests SET status = 'garbage'")
        .execute(&w.s.db.pool)
        .await
        .expect("corrupt");
    replay::replay(&w.s, &[Projector::OpenRequests], |_, _| {})
        .await
        .expect("replay one");
    assert_eq!(snapshot(&w.s.db).await, before);
    // Accounts are not emptied by a replay (they are created outside the
    // stream): an edited account's edits are applied again.
    sqlx::query(
        "UPDATE users SET name = 'garbage', version = 99, disabled_at = NULL WHERE id = $1",
    )
    .bind(w.user.user.id.to_string())
    .execute(&w.s.db.pool)
    .await
    .expect("corrupt");
    replay::replay(&w.s, &[Projector::Accounts], |_, _| {})
        .await
        .expect("replay accounts");
    let after = snapshot(&w.s.db).await;
    assert_eq!(after["users"], before["users"]);
}

#[tokio::test]
async fn channel_authorization_keeps_tenants_and_users_apart() {
    let w = world().await;
    let other_admin = user(&w.s.db, "boss@b.io", Role::Admin, "B").await;
    let other_user = user(&w.s.db, "bob@a.io", Role::User, "A").await;
    let t = w.admin.user.tenant_id;
    let cases = [
        (&w.user.user, Channel::User(w.user.user.id), true),
        (&other_user, Channel::User(w.user.user.id), false),
        (&w.admin.user, Channel::User(w.user.user.id), true),
        (&other_admin, Channel::User(w.user.user.id), false),
        (&w.admin.user, Channel::TenantOpenRequests(t), true),
        (&w.user.user, Channel::TenantOpenRequests(t), false),
        (&other_admin, Channel::TenantLockers(t), false),
        (&w.admin.user, Channel::LockerBank(w.bank.id), true),
        (&other_admin, Channel::LockerBank(w.bank.id), false),
        (&w.user.user, Channel::LockerBank(w.bank.id), false),
    ];
    for (who, channel, expected) in cases {
        assert_eq!(
            channels::authorize(&w.s.db, who, &channel)
                .await
                .expect("auth"),
            expected,
            "{} on {channel}",
            who.email
        );
    }
    // Another tenant's admin cannot read this tenant's commands either.
    let d = opens::request_open(&w.s, &w.user, open(w.bank.compartments[0].id), now_ms())
        .await
        .expect("open");
    assert!(
        opens::get_open_request(&w.s, &caller(&other_admin), d.command_id)
            .await
            .expect("q")
            .is_none()
    );
    assert!(
        opens::get_open_request(&w.s, &caller(&other_user), d.command_id)
            .await
            .expect("q")
            .is_none()
    );
    assert!(opens::get_open_request(&w.s, &w.user, d.command_id)
        .await
        .expect("q")
        .is_some());
}

#[tokio::test]
async fn channel_seq_stays_gap_free_under_eight_concurrent_writers() {
    let w = world().await;
    let per_writer = 6;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, admin, bank) = (w.s.clone(), w.admin.clone(), w.bank.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_writer {
                let mut o = open(bank.compartments[i % 4].id);
                o.override_ = true;
                o.reason = Some("load".into());
                opens::request_open(&s, &admin, o, now_ms())
                    .await
                    .expect("open");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    for channel in [
        Channel::LockerBank(w.bank.id),
        Channel::TenantOpenRequests(w.admin.user.tenant_id),
    ] {
        let since = channels::since(&w.s.db, &channel, 0, 1000)
            .await
            .expect("since");
        let seqs: Vec<_> = since.events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=since.seq).collect::<Vec<_>>(),
            "{channel}: gap-free, no duplicates"
        );
    }
    let tenant = channels::since(
        &w.s.db,
        &Channel::TenantOpenRequests(w.admin.user.tenant_id),
        0,
        1000,
    )
    .await
    .expect("since");
    assert_eq!(
        tenant.seq,
        8 * per_writer as i64,
        "one accepted envelope per open"
    );
}

#[tokio::test]
async fn since_says_reset_when_history_was_pruned() {
    let w = world().await;
    // The world's bank registered and its grant: two envelopes.
    let ch = Channel::TenantLockers(w.admin.user.tenant_id);
    let all = channels::since(&w.s.db, &ch, 0, 100).await.expect("since");
    assert_eq!((all.seq, all.reset, all.events.len()), (2, false, 2));
    let nothing_new = channels::since(&w.s.db, &ch, 2, 100).await.expect("since");
    assert_eq!(
        (nothing_new.seq, nothing_new.reset, nothing_new.events.len()),
        (2, false, 0)
    );
    let future = channels::since(&w.s.db, &ch, 99, 100).await.expect("since");
    assert!(future.reset, "a seq the server never issued");
    channels::prune(&w.s.db, now_ms() + 1).await.expect("prune");
    let gone = channels::since(&w.s.db, &ch, 0, 100).await.expect("since");
    assert!(gone.reset && gone.events.is_empty() && gone.seq == 2);
    let caught_up = channels::since(&w.s.db, &ch, 2, 100).await.expect("since");
    assert!(
        !caught_up.reset,
        "a client already at the head lost nothing"
    );
}

/// Pruning deletes the entries older than the cutoff with their bodies
/// (PostgreSQL finds them by the log's age index, SQLite in commit order:
/// `channels::prune`), and leaves every newer entry with its body.
#[tokio::test]
async fn prune_deletes_old_entries_with_their_bodies_and_keeps_the_rest() {
    let w = world().await;
    let before = (
        count(&w, "SELECT COUNT(*) AS n FROM channel_log").await,
        count(&w, "SELECT COUNT(*) AS n FROM channel_bodies").await,
    );
    assert!(before.0 > 0 && before.1 > 0, "the world wrote envelopes");
    // An old envelope on two channels, committed before the world's: one
    // body (an id below theirs), two entries, each its channel's first.
    // Then one channel takes a new envelope (the world's last body).
    sqlx::query("INSERT INTO channel_bodies (id, body, occurred_at) VALUES (0, '{}', 1000)")
        .execute(&w.s.db.pool)
        .await
        .expect("old body");
    sqlx::query(
        "INSERT INTO channel_log (channel, seq, body_id, occurred_at) \
         VALUES ('private-old.a', 1, 0, 1000), ('private-old.b', 1, 0, 1000), \
         ('private-old.a', 2, (SELECT MAX(id) FROM channel_bodies), $1)",
    )
    .bind(now_ms())
    .execute(&w.s.db.pool)
    .await
    .expect("old entries and a new one");
    sqlx::query("INSERT INTO channel_heads (channel, seq) VALUES ('private-old.a', 2), ('private-old.b', 1)")
        .execute(&w.s.db.pool)
        .await
        .expect("their heads");
    assert_eq!(channels::prune(&w.s.db, 2000).await.expect("prune"), 2);
    let after = (
        count(&w, "SELECT COUNT(*) AS n FROM channel_log").await,
        count(&w, "SELECT COUNT(*) AS n FROM channel_bodies").await,
    );
    assert_eq!(
        after,
        (before.0 + 1, before.1),
        "only the old envelope went, body and all"
    );
    assert_eq!(
        count(
            &w,
            "SELECT COUNT(*) AS n FROM channel_log WHERE channel = 'private-old.a' AND seq = 2"
        )
        .await,
        1,
        "a channel keeps its entries after its old ones"
    );
    assert_eq!(
        count(
            &w,
            "SELECT COUNT(*) AS n FROM channel_log l LEFT JOIN channel_bodies b \
             ON b.id = l.body_id WHERE b.id IS NULL"
        )
        .await,
        0,
        "every entry left has its body"
    );
}

#[tokio::test]
async fn an_old_event_version_is_upcast_when_read_from_the_store() {
    let w = world().await;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO stored_events (event_id, aggregate_type, aggregate_uuid, aggregate_version, event_type, event_version, payload, metadata, occurred_at) \
         VALUES ($1, 'open_request', $2, 1, 'CompartmentOpenFailed', 1, $3, $4, 1)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(id.to_string())
    .bind(serde_json::json!({"command_id": id, "error": "jammed"}).to_string())
    .bind(serde_json::to_string(&w.admin.metadata()).expect("meta"))
    .execute(&w.s.db.pool)
    .await
    .expect("insert v1");
    let mut conn = w.s.db.pool.acquire().await.expect("conn");
    let stream = events::load_stream(&mut conn, id).await.expect("load");
    assert_eq!(
        stream[0].event,
        DomainEvent::CompartmentOpenFailed {
            command_id: id,
            reason: FailureReason::DeviceError,
            detail: Some("jammed".into())
        }
    );
}

#[tokio::test]
async fn heartbeats_bring_a_bank_online_and_silence_takes_it_offline() {
    let w = world().await;
    let t0 = now_ms();
    let events = |s: Services, id: Uuid| async move {
        let mut conn = s.db.pool.acquire().await.expect("conn");
        events::load_stream(&mut conn, id)
            .await
            .expect("stream")
            .len()
    };
    let before = events(w.s.clone(), w.bank.id).await;
    assert_eq!(
        lockers::heartbeat(&w.s, w.bank.id, t0).await.expect("hb"),
        Some(true),
        "first beat: a transition"
    );
    assert_eq!(
        lockers::heartbeat(&w.s, w.bank.id, t0 + 30_000)
            .await
            .expect("hb"),
        Some(false),
        "later beats: no event"
    );
    assert_eq!(events(w.s.clone(), w.bank.id).await, before + 1);
    let bank = lockers::get_bank(&w.s, w.admin.user.tenant_id, w.bank.id)
        .await
        .expect("q")
        .expect("bank");
    assert_eq!(
        (bank.online, bank.last_seen_at),
        (Some(true), Some(t0 + 30_000))
    );
    assert_eq!(
        lockers::heartbeat(&w.s, Uuid::now_v7(), t0)
            .await
            .expect("hb"),
        None,
        "unknown bank"
    );

    assert_eq!(
        lockers::sweep_offline(&w.s, t0 + 60_000, 90_000)
            .await
            .expect("sweep"),
        0,
        "not silent long enough"
    );
    assert_eq!(
        lockers::sweep_offline(&w.s, t0 + 121_000, 90_000)
            .await
            .expect("sweep"),
        1
    );
    assert_eq!(
        lockers::sweep_offline(&w.s, t0 + 200_000, 90_000)
            .await
            .expect("sweep"),
        0,
        "once"
    );
    let bank = lockers::get_bank(&w.s, w.admin.user.tenant_id, w.bank.id)
        .await
        .expect("q")
        .expect("bank");
    assert_eq!(bank.online, Some(false));

    // Offline lockers are not sent commands: the open is denied at once.
    let d = opens::request_open(&w.s, &w.user, open(w.bank.compartments[0].id), t0 + 121_500)
        .await
        .expect("open");
    assert_eq!(
        (d.status.as_str(), d.reason.map(|r| r.as_str())),
        ("denied", Some("locker_offline"))
    );

    // Both transitions reached the tenant's lockers channel.
    let since = channels::since(
        &w.s.db,
        &Channel::TenantLockers(w.admin.user.tenant_id),
        0,
        100,
    )
    .await
    .expect("since");
    let changes: Vec<_> = since
        .events
        .iter()
        .filter(|e| e.event == "DeviceStatusChanged")
        .map(|e| e.data["online"].as_bool())
        .collect();
    assert_eq!(changes, [Some(true), Some(false)]);
}

/// An envelope on several channels stores its body once; `events/since`
/// gives each channel the whole envelope with its own channel and seq.
#[tokio::test]
async fn an_envelope_on_several_channels_stores_its_body_once() {
    let w = world().await;
    let before = (
        count(&w, "SELECT COUNT(*) AS n FROM channel_log").await,
        count(&w, "SELECT COUNT(*) AS n FROM channel_bodies").await,
    );
    let user_head = channels::head(&w.s.db, &Channel::User(w.user.user.id))
        .await
        .expect("head");
    let tenant = Channel::TenantOpenRequests(w.admin.user.tenant_id);
    let tenant_head = channels::head(&w.s.db, &tenant).await.expect("head");
    let d = opens::request_open(&w.s, &w.user, open(w.bank.compartments[0].id), now_ms())
        .await
        .expect("open");
    let after = (
        count(&w, "SELECT COUNT(*) AS n FROM channel_log").await,
        count(&w, "SELECT COUNT(*) AS n FROM channel_bodies").await,
    );
    let (entries, bodies) = (after.0 - before.0, after.1 - before.1);
    assert!(
        entries >= 2,
        "the open is on the user's and the tenant's channel"
    );
    assert_eq!(bodies, 1, "one body for {entries} entries");
    let mine = channels::since(&w.s.db, &Channel::User(w.user.user.id), user_head, 10)
        .await
        .expect("since");
    let theirs = channels::since(&w.s.db, &tenant, tenant_head, 10)
        .await
        .expect("since");
    let (a, b) = (&mine.events[0], &theirs.events[0]);
    assert_eq!((a.event_id, b.event_id), (b.event_id, a.event_id));
    assert_eq!(a.subject, b.subject);
    assert_eq!(a.data["command_id"], d.command_id.to_string(), "{a:?}");
    assert_eq!(a.channel, Channel::User(w.user.user.id).to_string());
    assert_eq!(b.channel, tenant.to_string());
    assert_eq!((a.seq, b.seq), (user_head + 1, tenant_head + 1));
    assert_eq!((a.meta.replay, b.meta.replay), (true, true));
    assert_eq!(
        (&a.event, &a.data, &a.sender, a.correlation_id),
        (&b.event, &b.data, &b.sender, b.correlation_id)
    );
}

/// A timer that cannot fire (here: its command's row is corrupt) is left
/// for the next round and holds up none of the timers due after it.
#[tokio::test]
async fn a_timer_that_cannot_fire_holds_up_no_other() {
    let w = world().await;
    let t0 = now_ms();
    let d = opens::request_open(&w.s, &w.user, open(w.bank.compartments[0].id), t0)
        .await
        .expect("open");
    let poison = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO open_requests (command_id, tenant_id, compartment_id, bank_id, user_id, actor_id, \
         override, status, requested_at, updated_at) VALUES ($1, 'not-a-uuid', 'c', 'b', 'u', 'a', 0, 'sent', $2, $2)",
    )
    .bind(poison.to_string())
    .bind(t0)
    .execute(&w.s.db.pool)
    .await
    .expect("a corrupt row");
    sqlx::query(
        "INSERT INTO timers (id, kind, subject, due_at) VALUES ($1, 'open_timeout', $2, $3)",
    )
    .bind(format!("open_timeout:{poison}"))
    .bind(poison.to_string())
    .bind(t0 - 1_000)
    .execute(&w.s.db.pool)
    .await
    .expect("a timer due first");
    let fired = reactors::fire_due_timers(&w.s, t0 + 60_000)
        .await
        .expect("the round itself succeeds");
    assert_eq!(
        fired, 1,
        "the good timer fired despite the bad one before it"
    );
    let v = status(&w, d.command_id).await;
    assert_eq!(
        (v.status.as_str(), v.failure_reason.map(|r| r.as_str())),
        ("failed", Some("timeout"))
    );
}

/// The race a 25-minute PostgreSQL soak found once in 75,000 opens: the
/// send reactor read `accepted`, the locker's `opened` committed, and the
/// reactor's `sent` was then appended *after* it (the version was read
/// only when appending), leaving the command `sent` with its timer gone.
/// A decision must be appended at the version read before the state it
/// was made on, so the late one conflicts instead.
#[tokio::test]
async fn a_decision_on_a_stale_read_conflicts_instead_of_landing_after_a_newer_event() {
    let w = world().await;
    if w.s.db.backend == lockstep_core::db::Backend::Sqlite {
        // Writers take turns in-process on SQLite: nothing can commit
        // between a writer's reads and its append (and this test would
        // wait for its own turn). The race is PostgreSQL's.
        return;
    }
    let d = opens::request_open(&w.s, &w.user, open(w.bank.compartments[0].id), now_ms())
        .await
        .expect("open");
    assert_eq!(d.status, OpenStatus::Accepted);
    // The reactor's transaction: the version first, then the status.
    let (mut tx, version) = store::begin_on(&w.s.db, d.command_id).await.expect("begin");
    let status: String = sqlx::query("SELECT status FROM open_requests WHERE command_id = $1")
        .bind(d.command_id.to_string())
        .fetch_one(&mut *tx)
        .await
        .expect("status")
        .get("status");
    assert_eq!(status, "accepted");
    // Meanwhile the locker's result commits.
    assert_eq!(
        opens::record_result(&w.s, d.command_id, true, None, now_ms())
            .await
            .expect("result"),
        ResultOutcome::Applied
    );
    // The reactor's now stale `sent` conflicts.
    let late = store::commit_at(
        &w.s,
        tx,
        "open_request",
        d.command_id,
        version,
        vec![DomainEvent::CompartmentOpenSent {
            command_id: d.command_id,
        }],
        &events::Metadata::system(w.admin.user.tenant_id, d.command_id),
        now_ms(),
    )
    .await
    .expect("no error, a conflict");
    assert!(late.is_none(), "the stale decision must not be appended");
    assert_eq!(status_of(&w, d.command_id).await, OpenStatus::Opened);
    // And the real path, told again, decides on fresh state: nothing to do.
    assert!(!opens::record_sent(&w.s, d.command_id, now_ms())
        .await
        .expect("sent"));
    assert_eq!(status_of(&w, d.command_id).await, OpenStatus::Opened);
}

async fn status_of(w: &World, id: Uuid) -> OpenStatus {
    status(w, id).await.status
}

/// Issue 12, fault 5: the locker's error text is kept (cut to 500
/// characters) in the read model and the envelope, and a long one no
/// longer gets the whole result refused.
#[tokio::test]
async fn a_lockers_error_text_reaches_the_read_model_and_the_envelope() {
    let w = world().await;
    let d = opens::request_open(&w.s, &w.user, open(w.bank.compartments[0].id), now_ms())
        .await
        .expect("open");
    let long = "x".repeat(900);
    assert_eq!(
        opens::record_result(&w.s, d.command_id, false, Some(long), now_ms())
            .await
            .expect("result"),
        ResultOutcome::Applied
    );
    let v = status(&w, d.command_id).await;
    assert_eq!(v.status, OpenStatus::Failed);
    assert_eq!(v.failure_reason, Some(FailureReason::DeviceError));
    assert_eq!(v.failure_detail.as_ref().map(|d| d.len()), Some(500));
    let since = channels::since(&w.s.db, &Channel::User(w.user.user.id), 0, 100)
        .await
        .expect("since");
    let failed = since
        .events
        .iter()
        .filter_map(|e| {
            e.data_as::<lockstep_wire::envelope::OpenStatusUpdated>(
                lockstep_wire::envelope::names::OPEN_STATUS_UPDATED,
            )
        })
        .find(|u| u.command_id == d.command_id && u.status == OpenStatus::Failed)
        .expect("the failed envelope");
    assert_eq!(failed.detail.map(|d| d.len()), Some(500));
}
