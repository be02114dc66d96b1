//! Group commit (`eventstore::group_commit`), on SQLite and (with
//! `LOCKSTEP_TEST_DATABASE_URL`) PostgreSQL: writes that arrive together
//! share a transaction, each caller gets its own answer, seqs stay
//! gap-free, and a process killed mid-batch leaves whole writes only.

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use lockstep_core::{
    db::{Backend, Db},
    error::CoreError,
    eventstore::events::{Actor, DomainEvent},
    eventstore::store::Staged,
    identity::accounts::Role,
    identity::caller::Caller,
    lockers::{self, NewBank, NewCompartment},
    now_ms,
    opens::{self, OpenCommandInput, OpenStatus},
    services::Services,
    testing::{add_user, fresh_database, TestDb},
};
use sqlx::Row;
use tokio::sync::Semaphore;
use uuid::Uuid;

struct World {
    t: TestDb,
    s: Services,
    admin: Caller,
    user: Caller,
    bank: lockers::BankView,
}

async fn world_on(t: TestDb, serial: &str) -> World {
    let db = Db::open(&t.url).await.expect("db");
    let s = Services::new(db.clone(), Default::default());
    let admin = add_user(&db, "admin@a.io", Role::Admin, "A").await;
    let admin = Caller::new(admin.clone(), Actor::User { id: admin.id });
    let user = add_user(&db, "uma@a.io", Role::User, "A").await;
    let user = Caller::new(user.clone(), Actor::User { id: user.id });
    let bank = lockers::register_bank(
        &s,
        &admin,
        NewBank {
            serial: serial.into(),
            name: "Lobby".into(),
            location: None,
            compartments: (1..=8)
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
        t,
        s,
        admin,
        user,
        bank,
    }
}

async fn world() -> World {
    world_on(
        fresh_database().await,
        &format!("SN-{}", Uuid::now_v7().simple()),
    )
    .await
}

fn override_open(c: Uuid) -> OpenCommandInput {
    OpenCommandInput {
        compartment_id: c,
        override_: true,
        reason: Some("group commit test".into()),
        idempotency_key: None,
    }
}

/// Every channel's seqs are 1..=n without a gap or a repeat, its head is
/// n, and every log row points at a stored body. Returns the log's size.
async fn assert_log_whole(db: &Db) -> i64 {
    let rows = sqlx::query(
        "SELECT l.channel, COUNT(*) AS n, MIN(l.seq) AS lo, MAX(l.seq) AS hi, \
         COUNT(DISTINCT l.seq) AS d, MAX(h.seq) AS head, COUNT(b.id) AS bodies \
         FROM channel_log l JOIN channel_heads h ON h.channel = l.channel \
         LEFT JOIN channel_bodies b ON b.id = l.body_id GROUP BY l.channel",
    )
    .fetch_all(&db.pool)
    .await
    .expect("log");
    let mut total = 0;
    for r in &rows {
        let channel: String = r.get("channel");
        let (n, lo, hi, d, head, bodies): (i64, i64, i64, i64, i64, i64) = (
            r.get("n"),
            r.get("lo"),
            r.get("hi"),
            r.get("d"),
            r.get("head"),
            r.get("bodies"),
        );
        assert_eq!(
            (lo, hi, d, head, bodies),
            (1, n, n, n, n),
            "channel {channel}: seqs {lo}..{hi}, {d} distinct of {n}, head {head}, {bodies} bodies"
        );
        total += n;
    }
    // No head without its envelopes.
    let heads: i64 =
        sqlx::query("SELECT CAST(COALESCE(SUM(seq), 0) AS BIGINT) AS n FROM channel_heads")
            .fetch_one(&db.pool)
            .await
            .expect("heads")
            .get("n");
    assert_eq!(heads, total, "channel heads ahead of the log");
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_that_arrive_together_share_a_transaction_and_each_gets_its_answer() {
    let w = world().await;
    let before = w.s.writes.stats();
    let granted = w.bank.compartments[0].id;
    let not_granted = w.bank.compartments[1].id;
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let (s, admin, user) = (w.s.clone(), w.admin.clone(), w.user.clone());
        tasks.push(tokio::spawn(async move {
            let (caller, input) = match i % 5 {
                // Accepted: an override, and a user with a grant.
                0 | 1 => (admin, override_open(granted)),
                2 => (
                    user,
                    OpenCommandInput {
                        compartment_id: granted,
                        ..Default::default()
                    },
                ),
                // Denied: no grant.
                3 => (
                    user,
                    OpenCommandInput {
                        compartment_id: not_granted,
                        ..Default::default()
                    },
                ),
                // An error of its own: no such compartment.
                _ => (admin, override_open(Uuid::now_v7())),
            };
            (i, opens::request_open(&s, &caller, input, now_ms()).await)
        }));
    }
    let mut accepted = Vec::new();
    for t in tasks {
        let (i, answer) = t.await.expect("task");
        match (i % 5, answer) {
            (0..=2, Ok(d)) if d.status == OpenStatus::Accepted => accepted.push(d.command_id),
            (3, Ok(d)) if d.status == OpenStatus::Denied => {}
            (4, Err(CoreError::NotFound)) => {}
            (k, other) => panic!("request {i} (kind {k}) got {other:?}"),
        }
    }
    assert_eq!(accepted.len(), 120);
    let after = w.s.writes.stats();
    assert!(
        after.batched - before.batched > after.batches - before.batches,
        "no two writes shared a transaction: {before:?} → {after:?}"
    );
    // The failing ones were split off, each alone, and the rest committed
    // together.
    assert!(after.splits > before.splits, "{after:?}");
    assert!(after.alone - before.alone < 100, "{before:?} → {after:?}");
    if w.s.db.backend == lockstep_core::db::Backend::Postgres {
        assert!(
            after.fused - before.fused
                >= after.batches - before.batches - (after.splits - before.splits),
            "every batch not cut ended in one statement: {before:?} → {after:?}"
        );
    } else {
        // On a SQLite file every end that was the whole transaction, of
        // a batch of any size, was one call to the direct writer.
        assert!(after.direct > before.direct, "{before:?} → {after:?}");
        assert_eq!(
            after.direct - before.direct,
            after.single_statement - before.single_statement,
            "{before:?} → {after:?}"
        );
    }
    for id in &accepted {
        let v = opens::get_open_request(&w.s, &w.admin, *id)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(v.status, OpenStatus::Accepted);
    }
    let events: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM stored_events WHERE aggregate_type = 'open_request'",
    )
    .fetch_one(&w.s.db.pool)
    .await
    .expect("events")
    .get("n");
    // Requested + authorized or denied, for the 160 that were decided.
    assert_eq!(events, 320);
    assert_log_whole(&w.s.db).await;
}

/// Holds the writer that `key` falls to until `gate` opens; returns once
/// the writer runs the held write.
async fn hold_writer(w: &World, key: Uuid, gate: Arc<Semaphore>) -> tokio::task::JoinHandle<()> {
    let before = w.s.writes.stats();
    let s = w.s.clone();
    let held = tokio::spawn(async move {
        s.writes
            .write(key, move |_conn| {
                let gate = gate.clone();
                Box::pin(async move {
                    let _ = gate.acquire().await;
                    Ok(((), Staged::default()))
                })
            })
            .await
            .expect("the held write");
    });
    while w.s.writes.stats().alone == before.alone {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    held
}

/// A batch plans its transitions' writes per batch (the commands read in
/// one query, the events inserted and the rows updated in one statement
/// each), yet each write sees the ones before it: a command's `sent` and
/// its locker's result in the same batch both apply, in order, and a
/// repeated result is a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_transitions_sees_its_own_writes() {
    let w = world().await;
    let compartment = w.bank.compartments[0].id;
    let mut commands = Vec::new();
    for _ in 0..12 {
        let d = opens::request_open(&w.s, &w.admin, override_open(compartment), now_ms())
            .await
            .expect("open");
        assert!(d.accepted());
        commands.push(d.command_id);
    }
    // The commands that fall to one writer (all of them on SQLite).
    let writers = match w.s.db.backend {
        lockstep_core::db::Backend::Sqlite => 1u128,
        lockstep_core::db::Backend::Postgres => {
            lockstep_core::eventstore::group_commit::POSTGRES_WRITERS as u128
        }
    };
    let lane = commands[0].as_u128() % writers;
    let commands: Vec<Uuid> = commands
        .into_iter()
        .filter(|c| c.as_u128() % writers == lane)
        .collect();
    assert!(commands.len() >= 2, "two commands on one writer");
    let mut jobs = Vec::new();
    for c in &commands {
        let job: i64 = sqlx::query(
            "SELECT o.id FROM outbox o JOIN stored_events e ON e.event_id = o.event_id \
             WHERE e.aggregate_uuid = $1",
        )
        .bind(c.to_string())
        .fetch_one(&w.s.db.pool)
        .await
        .expect("the send's outbox row")
        .get("id");
        jobs.push(job);
    }
    let before = w.s.writes.stats();
    let gate = Arc::new(Semaphore::new(0));
    let held = hold_writer(&w, commands[0], gate.clone()).await;
    // Queued in this order: each command's sent, its result, the result
    // again.
    let mut tasks = Vec::new();
    let mut queued = w.s.writes.queued();
    for (c, job) in commands.iter().copied().zip(jobs.iter().copied()) {
        for step in 0..3 {
            let s = w.s.clone();
            tasks.push(tokio::spawn(async move {
                match step {
                    0 => format!(
                        "sent {}",
                        opens::record_sent_for(&s, c, now_ms(), Some(job))
                            .await
                            .expect("sent")
                    ),
                    _ => format!(
                        "{:?}",
                        opens::record_result(&s, c, true, None, now_ms())
                            .await
                            .expect("result")
                    ),
                }
            }));
            while w.s.writes.queued() < queued + 1 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            queued += 1;
        }
    }
    gate.add_permits(1);
    held.await.expect("held");
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    let expected: Vec<String> = commands
        .iter()
        .flat_map(|_| ["sent true", "Applied", "Duplicate"].map(String::from))
        .collect();
    assert_eq!(answers, expected);
    let after = w.s.writes.stats();
    assert!(
        after.batched - before.batched >= 3 * commands.len() as u64,
        "the transitions shared a transaction: {before:?} → {after:?}"
    );
    assert_eq!(after.splits, before.splits, "no batch was cut");
    // One batch held every command's sent and results (nothing else
    // writes in this world), and each result read its command as that
    // batch's `sent` left it, with nothing applied before its end.
    assert_eq!(
        after.batches - before.batches,
        1,
        "one batch: {before:?} → {after:?}"
    );
    assert_eq!(
        after.flushes, before.flushes,
        "the batch followed its own transitions: {before:?} → {after:?}"
    );
    if w.s.db.backend == lockstep_core::db::Backend::Postgres {
        // Their rows were inserted and changed in one batch: so one
        // statement ended each part of it that could be (`batch_end`).
        assert!(
            after.fused > before.fused,
            "the batch ended in one statement: {before:?} → {after:?}"
        );
    }
    for (c, job) in commands.iter().zip(&jobs) {
        let view = opens::get_open_request(&w.s, &w.admin, *c)
            .await
            .expect("view")
            .expect("the command");
        assert_eq!(view.status, OpenStatus::Opened);
        assert!(view.sent_at.is_some() && view.opened_at.is_some());
        let types: Vec<(String, i64, i64)> = sqlx::query(
            "SELECT event_type, aggregate_version, id FROM stored_events \
             WHERE aggregate_uuid = $1 ORDER BY aggregate_version",
        )
        .bind(c.to_string())
        .fetch_all(&w.s.db.pool)
        .await
        .expect("events")
        .iter()
        .map(|r| (r.get("event_type"), r.get("aggregate_version"), r.get("id")))
        .collect();
        let names: Vec<(&str, i64)> = types.iter().map(|(t, v, _)| (t.as_str(), *v)).collect();
        assert_eq!(
            names,
            [
                ("CompartmentOpenRequested", 1),
                ("CompartmentOpenAuthorized", 2),
                ("CompartmentOpenSent", 3),
                ("CompartmentOpened", 4)
            ]
        );
        assert!(
            types.windows(2).all(|p| p[0].2 < p[1].2),
            "positions in order"
        );
        let (status, attempts): (String, i64) =
            sqlx::query("SELECT status, attempts FROM outbox WHERE id = $1")
                .bind(*job)
                .fetch_one(&w.s.db.pool)
                .await
                .map(|r| (r.get("status"), r.get("attempts")))
                .expect("outbox row");
        assert_eq!((status.as_str(), attempts), ("done", 1));
    }
    // The compartment's latest status is the last command's.
    let latest: (Option<String>, Option<String>) =
        sqlx::query("SELECT latest_status, latest_command_id FROM compartments WHERE id = $1")
            .bind(compartment.to_string())
            .fetch_one(&w.s.db.pool)
            .await
            .map(|r| (r.get("latest_status"), r.get("latest_command_id")))
            .expect("compartment");
    let last = commands.last().map(ToString::to_string);
    assert_eq!((latest.0.as_deref(), latest.1), (Some("opened"), last));
    assert_log_whole(&w.s.db).await;
}

/// Two requests with one `Idempotency-Key` in one batch: the second reads
/// the first's command (whose row the batch has not written yet) and
/// answers with it; one command is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_in_the_same_batch_answers_with_the_first() {
    let w = world().await;
    let compartment = w.bank.compartments[0].id;
    let before = w.s.writes.stats();
    let gate = Arc::new(Semaphore::new(0));
    // Requests go to the writer their compartment falls to.
    let held = hold_writer(&w, compartment, gate.clone()).await;
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (s, user) = (w.s.clone(), w.user.clone());
        let queued = w.s.writes.queued();
        tasks.push(tokio::spawn(async move {
            let input = OpenCommandInput {
                compartment_id: compartment,
                idempotency_key: Some(if i < 2 { "same-key" } else { "other-key" }.into()),
                ..Default::default()
            };
            opens::request_open(&s, &user, input, now_ms()).await
        }));
        while w.s.writes.queued() < queued + 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    gate.add_permits(1);
    held.await.expect("held");
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task").expect("answer"));
    }
    assert!(answers.iter().all(|d| d.accepted()), "{answers:?}");
    assert_eq!(answers[0], answers[1], "the same key, the same command");
    assert_ne!(answers[0].command_id, answers[2].command_id);
    let after = w.s.writes.stats();
    assert!(
        after.batched - before.batched >= 3,
        "{before:?} → {after:?}"
    );
    assert_eq!(after.splits, before.splits, "no batch was cut");
    let commands: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM open_requests WHERE compartment_id = $1")
            .bind(compartment.to_string())
            .fetch_one(&w.s.db.pool)
            .await
            .expect("rows")
            .get("n");
    assert_eq!(commands, 2);
}

/// Grants `w.user` the compartment through the group commit, keyed as an
/// open of it is (so both fall to one writer).
async fn group_committed_grant(
    s: Services,
    admin: Caller,
    user: Uuid,
    bank: Uuid,
    compartment: Uuid,
) -> Uuid {
    let grant_id = Uuid::now_v7();
    let event = DomainEvent::AccessGranted {
        grant_id,
        compartment_id: compartment,
        bank_id: bank,
        tenant_id: admin.user.tenant_id,
        user_id: user,
        valid_from: None,
        valid_until: None,
    };
    let (mode, meta, now) = (s.mode(), admin.metadata(), now_ms());
    let ((), written) = s
        .writes
        .write(compartment, move |conn| {
            let (event, meta) = (event.clone(), meta.clone());
            Box::pin(async move {
                let staged = conn
                    .stage(mode, "grant", grant_id, 0, vec![event], &meta, now, None)
                    .await?;
                Ok(((), staged))
            })
        })
        .await
        .expect("grant");
    s.published(&written);
    grant_id
}

/// A grant's row waits for its batch's end, yet a read in the same batch
/// (the grantee's open) sees it; a write that wrote nothing before its end
/// is one round trip, its `BEGIN` and `COMMIT` (SQLite) or none
/// (PostgreSQL) in the end's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_grant_is_seen_by_its_batch_and_alone_is_one_statement() {
    let w = world().await;
    // Alone.
    let alone = w.bank.compartments[3].id;
    let before = w.s.writes.stats();
    let grant = group_committed_grant(
        w.s.clone(),
        w.admin.clone(),
        w.user.user.id,
        w.bank.id,
        alone,
    )
    .await;
    let after = w.s.writes.stats();
    assert_eq!(
        after.single_statement - before.single_statement,
        1,
        "{before:?} → {after:?}"
    );
    let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM grants WHERE id = $1 AND user_id = $2")
        .bind(grant.to_string())
        .bind(w.user.user.id.to_string())
        .fetch_one(&w.s.db.pool)
        .await
        .expect("grant row")
        .get("n");
    assert_eq!(rows, 1, "the grant's row was written with its event");
    let open = |c: Uuid| OpenCommandInput {
        compartment_id: c,
        ..Default::default()
    };
    let d = opens::request_open(&w.s, &w.user, open(alone), now_ms())
        .await
        .expect("open");
    assert!(d.accepted(), "{d:?}");

    // In one batch: the grant, then the grantee's open of it.
    let compartment = w.bank.compartments[2].id;
    let gate = Arc::new(Semaphore::new(0));
    let held = hold_writer(&w, compartment, gate.clone()).await;
    let before = w.s.writes.stats();
    let queued = w.s.writes.queued();
    let granting = tokio::spawn(group_committed_grant(
        w.s.clone(),
        w.admin.clone(),
        w.user.user.id,
        w.bank.id,
        compartment,
    ));
    while w.s.writes.queued() < queued + 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (s, user) = (w.s.clone(), w.user.clone());
    let opening =
        tokio::spawn(
            async move { opens::request_open(&s, &user, open(compartment), now_ms()).await },
        );
    while w.s.writes.queued() < queued + 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    gate.add_permits(1);
    held.await.expect("held");
    granting.await.expect("granting");
    let d = opening.await.expect("opening").expect("open");
    assert!(
        d.accepted(),
        "the open did not see the grant before it: {d:?}"
    );
    let after = w.s.writes.stats();
    assert_eq!(after.batches - before.batches, 1, "{before:?} → {after:?}");
    assert_eq!(after.batched - before.batched, 2, "{before:?} → {after:?}");
    assert_log_whole(&w.s.db).await;
}

/// A mark of the session a group-committed write ran on: a random id kept
/// in a temporary table, which only that connection sees.
async fn writer_session(s: &Services, key: Uuid) -> Result<String, CoreError> {
    let backend = s.db.backend;
    let (id, _) = s
        .writes
        .write(key, move |conn| {
            Box::pin(async move {
                let c = conn.reader().await?;
                let create = match backend {
                    Backend::Sqlite => {
                        "CREATE TEMP TABLE IF NOT EXISTS session_mark AS SELECT hex(randomblob(8)) AS id"
                    }
                    Backend::Postgres => {
                        "CREATE TEMP TABLE IF NOT EXISTS session_mark AS \
                         SELECT pg_backend_pid() || ':' || md5(random()::text) AS id"
                    }
                };
                sqlx::query(create).execute(&mut *c).await?;
                let id: String = sqlx::query("SELECT id FROM session_mark")
                    .fetch_one(&mut *c)
                    .await?
                    .try_get("id")?;
                Ok((id, Staged::default()))
            })
        })
        .await?;
    Ok(id)
}

/// The writer keeps its connection from batch to batch (a pooled one given
/// back costs a round trip each time), rolls it back after a failed write
/// and keeps it, and replaces it when it broke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_keeps_its_connection_and_replaces_a_broken_one() {
    let w = world().await;
    let key = w.bank.compartments[0].id;
    let first = writer_session(&w.s, key).await.expect("first");
    for _ in 0..5 {
        assert_eq!(writer_session(&w.s, key).await.expect("again"), first);
    }
    // A write that commits, then one that fails.
    let grant =
        group_committed_grant(w.s.clone(), w.admin.clone(), w.user.user.id, w.bank.id, key).await;
    let failed =
        w.s.writes
            .write(key, |conn| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO no_such_table (x) VALUES (1)")
                        .execute(conn.writer().await?)
                        .await?;
                    Ok(((), Staged::default()))
                })
            })
            .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        writer_session(&w.s, key)
            .await
            .expect("after a failed write"),
        first,
        "a failed write's connection is rolled back and kept"
    );
    let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM grants WHERE id = $1")
        .bind(grant.to_string())
        .fetch_one(&w.s.db.pool)
        .await
        .expect("grant row")
        .get("n");
    assert_eq!(rows, 1);
    if w.s.db.backend == Backend::Postgres {
        let pid: i64 = first
            .split(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a backend pid");
        sqlx::query("SELECT pg_terminate_backend($1::int)")
            .bind(pid)
            .execute(&w.s.db.pool)
            .await
            .expect("terminate the writer's session");
        // The write that meets the closed session fails with it (as any
        // query on a connection the server dropped); the next one runs on
        // a fresh connection.
        let _ = writer_session(&w.s, key).await;
        let next = writer_session(&w.s, key).await.expect("a fresh session");
        assert_ne!(next, first);
        assert_eq!(writer_session(&w.s, key).await.expect("kept"), next);
    }
}

/// A write that fails in a batch is answered with its own error, leaves
/// nothing behind, and its neighbours commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_write_does_not_fail_its_neighbours() {
    let w = world().await;
    sqlx::query("CREATE TABLE gc_probe (id TEXT PRIMARY KEY)")
        .execute(&w.s.db.pool)
        .await
        .expect("table");
    sqlx::query("INSERT INTO gc_probe (id) VALUES ('taken')")
        .execute(&w.s.db.pool)
        .await
        .expect("row");
    let before = w.s.writes.stats();
    // A first write that holds the writer until the others are queued, so
    // they make one batch.
    let gate = Arc::new(Semaphore::new(0));
    let held = {
        let (s, gate) = (w.s.clone(), gate.clone());
        tokio::spawn(async move {
            s.writes
                .write(Uuid::nil(), move |_conn| {
                    let gate = gate.clone();
                    Box::pin(async move {
                        let _ = gate.acquire().await;
                        Ok(((), Staged::default()))
                    })
                })
                .await
        })
    };
    // Until the writer runs it.
    while w.s.writes.stats().alone == before.alone {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut tasks = Vec::new();
    for i in 0..10usize {
        let s = w.s.clone();
        tasks.push(tokio::spawn(async move {
            let answer = s
                .writes
                .write(Uuid::nil(), move |conn| {
                    Box::pin(async move {
                        let id = match i {
                            // A database error: the key is taken (on
                            // PostgreSQL this aborts the transaction).
                            3 => "taken".to_string(),
                            _ => format!("w{i}"),
                        };
                        sqlx::query("INSERT INTO gc_probe (id) VALUES ($1)")
                            .bind(&id)
                            .execute(conn.writer().await?)
                            .await?;
                        if i == 7 {
                            // Wrote, then refused: its row must not stay.
                            return Err(CoreError::Invalid("write 7 refuses".into()));
                        }
                        Ok((i, Staged::default()))
                    })
                })
                .await;
            (i, answer)
        }));
        // In order, so the failing ones sit in the middle of the batch.
        while w.s.writes.queued() < i + 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    gate.add_permits(1);
    held.await.expect("task").expect("the held write");
    for t in tasks {
        match t.await.expect("task") {
            (3, Err(CoreError::Database(e))) => {
                assert!(CoreError::is_unique_violation(&e), "{e}")
            }
            (7, Err(CoreError::Invalid(m))) => assert_eq!(m, "write 7 refuses"),
            (i, Ok((j, _))) if i == j && i != 3 && i != 7 => {}
            (i, other) => panic!("write {i} got {other:?}"),
        }
    }
    let ids: HashSet<String> = sqlx::query("SELECT id FROM gc_probe")
        .fetch_all(&w.s.db.pool)
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get("id"))
        .collect();
    let expected: HashSet<String> = ["taken", "w0", "w1", "w2", "w4", "w5", "w6", "w8", "w9"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(ids, expected);
    let after = w.s.writes.stats();
    // The held write alone; then the ten, cut at write 3 (0..=2 together,
    // 3 alone, 4..=9 together), then 4..=9 cut at write 7 (4..=6
    // together, 7 alone, 8..=9 together).
    assert_eq!(after.splits - before.splits, 2, "{before:?} → {after:?}");
    assert_eq!(after.alone - before.alone, 3, "{before:?} → {after:?}");
    assert_eq!(after.batched - before.batched, 8, "{before:?} → {after:?}");
}

/// A write that panics (a bug, not an input) loses its batch: every caller
/// of it hears so, nothing of it is committed, and the writer goes on to
/// the next write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_panics_loses_its_batch_not_the_writer() {
    let w = world().await;
    sqlx::query("CREATE TABLE gc_panic (id TEXT PRIMARY KEY)")
        .execute(&w.s.db.pool)
        .await
        .expect("table");
    let gate = Arc::new(Semaphore::new(0));
    let held = hold_writer(&w, Uuid::nil(), gate.clone()).await;
    let mut tasks = Vec::new();
    for i in 0..3usize {
        let s = w.s.clone();
        tasks.push(tokio::spawn(async move {
            s.writes
                .write(Uuid::nil(), move |conn| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO gc_panic (id) VALUES ($1)")
                            .bind(format!("w{i}"))
                            .execute(conn.writer().await?)
                            .await?;
                        if i == 1 {
                            panic!("write 1 panics (on purpose, in a test)");
                        }
                        Ok((i, Staged::default()))
                    })
                })
                .await
        }));
        while w.s.writes.queued() < i + 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let before = w.s.writes.stats();
    gate.add_permits(1);
    held.await.expect("the held write");
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.expect("task") {
            Err(CoreError::Conflict(m)) => assert!(m.contains("abandoned"), "write {i}: {m}"),
            other => panic!("write {i} got {other:?}"),
        }
    }
    assert_eq!(w.s.writes.stats().batches - before.batches, 1);
    let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM gc_panic")
        .fetch_one(&w.s.db.pool)
        .await
        .expect("rows")
        .get("n");
    assert_eq!(rows, 0, "nothing of the panicked batch was committed");
    // The writer goes on, on a connection that is not inside the lost
    // batch's transaction. (A write with nothing for the batch's end runs
    // no statement for it, yet what it wrote itself is committed: the
    // row is read below.)
    let before = w.s.writes.stats();
    let (answer, _) =
        w.s.writes
            .write(Uuid::nil(), move |conn| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO gc_panic (id) VALUES ('after')")
                        .execute(conn.writer().await?)
                        .await?;
                    Ok(("after", Staged::default()))
                })
            })
            .await
            .expect("the writer goes on");
    assert_eq!(answer, "after");
    // A write that changed nothing has an end with nothing in it.
    let (nothing, written) =
        w.s.writes
            .write(Uuid::nil(), move |_| {
                Box::pin(async move { Ok(("nothing", Staged::default())) })
            })
            .await
            .expect("a write that changed nothing");
    assert_eq!(nothing, "nothing");
    assert!(written.events.is_empty() && written.appended.is_empty());
    let after = w.s.writes.stats();
    assert_eq!(after.empty - before.empty, 2, "{before:?} → {after:?}");
    assert_eq!(after.fused, before.fused, "no end statement ran");
    // And a write alone whose end is the whole transaction (on SQLite, the
    // direct writer's, on the calling thread when the lock is free).
    let before = w.s.writes.stats();
    group_committed_grant(
        w.s.clone(),
        w.admin.clone(),
        w.user.user.id,
        w.bank.id,
        w.bank.compartments[5].id,
    )
    .await;
    let after = w.s.writes.stats();
    assert_eq!(after.single_statement - before.single_statement, 1);
    let ids: Vec<String> = sqlx::query("SELECT id FROM gc_panic")
        .fetch_all(&w.s.db.pool)
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get("id"))
        .collect();
    assert_eq!(ids, ["after"]);
}

const CHILD_ENV: &str = "LOCKSTEP_GROUP_COMMIT_CHILD";
/// The child's sessions' name on PostgreSQL.
const CHILD_APP: &str = "lockstep_crash_child";

/// Not a test on its own: the process the crash test starts and kills.
/// It opens compartments from 64 concurrent callers until killed, and
/// prints each acknowledged command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by a_process_killed_mid_batch_leaves_whole_writes_only"]
async fn crash_child() {
    let Ok(url) = std::env::var(CHILD_ENV) else {
        return;
    };
    let db = Db::open(&url).await.expect("db");
    let s = Services::new(db.clone(), Default::default());
    let row = sqlx::query(
        "SELECT u.id AS admin, c.id AS compartment FROM users u, compartments c \
         WHERE u.email = 'admin@a.io' ORDER BY c.number",
    )
    .fetch_all(&db.pool)
    .await
    .expect("world");
    let admin_id = Uuid::parse_str(&row[0].get::<String, _>("admin")).expect("id");
    let admin = lockstep_core::identity::accounts::find_user(&db, admin_id)
        .await
        .expect("admin")
        .expect("admin exists");
    let admin = Caller::new(admin, Actor::User { id: admin_id });
    let compartments: Vec<Uuid> = row
        .iter()
        .map(|r| Uuid::parse_str(&r.get::<String, _>("compartment")).expect("id"))
        .collect();
    let mut tasks = Vec::new();
    for i in 0..64usize {
        let (s, admin) = (s.clone(), admin.clone());
        let c = compartments[i % compartments.len()];
        tasks.push(tokio::spawn(async move {
            loop {
                match opens::request_open(&s, &admin, override_open(c), now_ms()).await {
                    Ok(d) => println!("acked {}", d.command_id),
                    Err(e) => {
                        // For the parent's message.
                        println!("failed {e}");
                        std::process::exit(1);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Waits for a killed child's PostgreSQL sessions to end: a killed
/// client's statement still runs to its end, and may commit, so the store
/// is read (and the next child started) only after.
async fn child_sessions_ended(db: &Db) {
    if db.backend != Backend::Postgres {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let sessions: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database()",
        )
        .bind(CHILD_APP)
        .fetch_one(&db.pool)
        .await
        .expect("sessions")
        .get("n");
        if sessions == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the killed child's {sessions} sessions did not end"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGKILL in the middle of steady group-committed writes: every
/// acknowledged command is whole in the store (its events, read model,
/// outbox row, timer and envelopes), any other command is whole or absent,
/// and the channel log has no gap or stray head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_batch_leaves_whole_writes_only() {
    let w = world().await;
    let url = match w.s.db.backend {
        Backend::Postgres => format!("{}?application_name={CHILD_APP}", w.t.url),
        Backend::Sqlite => w.t.url.clone(),
    };
    let mut acked = HashSet::new();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .args(["crash_child", "--exact", "--ignored", "--nocapture"])
            .env(CHILD_ENV, &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the child");
        let stdout = child.stdout.take().expect("stdout");
        // Killed after a few hundred acknowledgements, at no particular
        // point of a batch (each round at a different count).
        let kill_after = 300 + round * 137;
        let lines = tokio::task::spawn_blocking(move || {
            let (mut seen, mut failed) = (Vec::new(), Vec::new());
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(e) = line.strip_prefix("failed ") {
                    failed.push(e.to_string());
                }
                if let Some(id) = line.strip_prefix("acked ") {
                    seen.push(Uuid::parse_str(id.trim()).expect("a command id"));
                    if seen.len() == kill_after {
                        let _ = child.kill();
                    }
                }
                // After the kill: what the child printed before it died,
                // still in the pipe, up to its end.
            }
            let _ = child.wait();
            (seen, failed)
        })
        .await
        .expect("reader");
        let (lines, failed) = lines;
        assert!(
            lines.len() >= kill_after,
            "the child stopped early after {} acknowledgements: {failed:?}",
            lines.len()
        );
        acked.extend(lines);
        child_sessions_ended(&w.s.db).await;
    }
    let db = &w.s.db;
    // Every command in the store, with what its write made.
    let rows = sqlx::query(
        "SELECT e.aggregate_uuid AS id, COUNT(*) AS events, \
         (SELECT COUNT(*) FROM open_requests o WHERE o.command_id = e.aggregate_uuid) AS views, \
         (SELECT COUNT(*) FROM timers t WHERE t.subject = e.aggregate_uuid) AS timers \
         FROM stored_events e WHERE e.aggregate_type = 'open_request' GROUP BY e.aggregate_uuid",
    )
    .fetch_all(&db.pool)
    .await
    .expect("commands");
    let mut present = HashSet::new();
    for r in &rows {
        let id: String = r.get("id");
        let (events, views, timers): (i64, i64, i64) =
            (r.get("events"), r.get("views"), r.get("timers"));
        assert_eq!(
            (events, views, timers),
            (2, 1, 1),
            "command {id} is not whole"
        );
        present.insert(Uuid::parse_str(&id).expect("id"));
    }
    let missing: Vec<_> = acked.difference(&present).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let outbox: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE reactor = 'send_open'")
        .fetch_one(&db.pool)
        .await
        .expect("outbox")
        .get("n");
    assert_eq!(
        outbox,
        present.len() as i64,
        "an outbox row without its command, or missing"
    );
    // Three envelopes per accepted open (user, tenant, bank channels), plus
    // the bank's registration and grant envelopes of the setup.
    let log = assert_log_whole(db).await;
    let setup: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM channel_log l JOIN channel_bodies b ON b.id = l.body_id \
         WHERE b.body NOT LIKE '%CompartmentOpenStatusUpdated%'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("setup")
    .get("n");
    assert_eq!(log - setup, 3 * present.len() as i64);
    // At most the writes in flight when each child died are present
    // without an acknowledgement (committed, not yet answered).
    assert!(
        present.len() - acked.len() <= 3 * 64,
        "{} present, {} acknowledged",
        present.len(),
        acked.len()
    );
}
