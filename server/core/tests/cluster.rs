//! What several nodes share through the database: presence members joined
//! and left under the channel's lock (first and last connection decided
//! once, even when connections race), and the sweep of a dead node's rows
//! (its users announced once, whoever sweeps). SQLite, and PostgreSQL when
//! `LOCKSTEP_TEST_DATABASE_URL` is set.

use std::collections::HashSet;

use lockstep_core::{
    cluster::{
        nodes, occupancy,
        presence::{self, Gone, Joined, Member},
    },
    db::Db,
    now_ms,
    testing::fresh_database,
};
use serde_json::json;

fn member(id: &str) -> Member {
    Member {
        user_id: id.into(),
        user_info: json!({"name": id}),
    }
}

async fn db() -> (Db, lockstep_core::testing::TestDb) {
    let t = fresh_database().await;
    (Db::open(&t.url).await.expect("open"), t)
}

fn first(j: Joined) -> bool {
    match j {
        Joined::In { first, .. } => first,
        Joined::Full => panic!("full"),
    }
}

#[tokio::test]
async fn a_user_is_added_with_their_first_connection_and_removed_with_their_last() {
    let (db, _t) = db().await;
    let now = now_ms();
    assert!(first(
        presence::join(&db, "n1", "presence-a", "1.1", &member("ann"), 10, now)
            .await
            .expect("join")
    ));
    assert!(!first(
        presence::join(&db, "n2", "presence-a", "2.1", &member("ann"), 10, now)
            .await
            .expect("join")
    ));
    match presence::join(&db, "n2", "presence-a", "2.2", &member("bob"), 10, now)
        .await
        .expect("join")
    {
        Joined::In {
            first,
            members,
            version,
        } => {
            assert!(first);
            assert_eq!(
                version, 2,
                "Ann's arrival was the channel's first announcement"
            );
            assert_eq!(
                members
                    .iter()
                    .map(|m| m.user_id.as_str())
                    .collect::<Vec<_>>(),
                ["ann", "bob"]
            );
        }
        Joined::Full => panic!("full"),
    }
    // A channel of two distinct users is full for a third, not for Ann.
    assert_eq!(
        presence::join(&db, "n1", "presence-a", "1.2", &member("cy"), 2, now)
            .await
            .expect("join"),
        Joined::Full
    );
    assert!(!first(
        presence::join(&db, "n1", "presence-a", "1.3", &member("ann"), 2, now)
            .await
            .expect("join")
    ));
    assert_eq!(
        presence::leave(&db, "presence-a", "1.1")
            .await
            .expect("leave"),
        None
    );
    assert_eq!(
        presence::leave(&db, "presence-a", "2.1")
            .await
            .expect("leave"),
        None
    );
    assert_eq!(
        presence::leave(&db, "presence-a", "1.3")
            .await
            .expect("leave"),
        Some(("ann".into(), 3))
    );
    // Leaving twice changes nothing.
    assert_eq!(
        presence::leave(&db, "presence-a", "1.3")
            .await
            .expect("leave"),
        None
    );
    assert_eq!(
        presence::user_counts(&db).await.expect("counts"),
        [("presence-a".to_string(), 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_connections_of_one_user_make_one_first_and_one_last() {
    let (db, _t) = db().await;
    let now = now_ms();
    let joins = (0..16).map(|i| {
        let db = db.clone();
        async move {
            presence::join(
                &db,
                "n1",
                "presence-race",
                &format!("1.{i}"),
                &member("ann"),
                100,
                now,
            )
            .await
            .expect("join")
        }
    });
    let firsts = futures_join_all(joins)
        .await
        .into_iter()
        .filter(|j| first(j.clone()))
        .count();
    assert_eq!(firsts, 1, "member_added must be decided once");
    let leaves = (0..16).map(|i| {
        let db = db.clone();
        async move {
            presence::leave(&db, "presence-race", &format!("1.{i}"))
                .await
                .expect("leave")
        }
    });
    let lasts = futures_join_all(leaves).await.into_iter().flatten().count();
    assert_eq!(lasts, 1, "member_removed must be decided once");
}

/// Runs the futures concurrently on the runtime (tasks, so they race for
/// real on a multi-threaded runtime too).
async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_nodes_members_are_swept_once_and_only_theirs() {
    let (db, _t) = db().await;
    let now = now_ms();
    nodes::register(&db, "live", "live:1", Some("c-live"), now, now + 10_000)
        .await
        .expect("live");
    nodes::register(&db, "dead", "dead:1", Some("c-dead"), now - 20_000, now - 1)
        .await
        .expect("dead");
    for (node, socket, user) in [
        ("dead", "9.1", "bob"),
        ("dead", "9.2", "cy"),
        ("live", "1.1", "cy"),
        ("live", "1.2", "ann"),
    ] {
        presence::join(&db, node, "presence-x", socket, &member(user), 100, now)
            .await
            .expect("join");
    }
    presence::join(
        &db,
        "gone-without-a-row",
        "presence-y",
        "7.1",
        &member("dee"),
        100,
        now,
    )
    .await
    .expect("join");
    let sweeps = (0..4).map(|_| {
        let db = db.clone();
        async move { presence::sweep(&db, now).await.expect("sweep") }
    });
    let gone: Vec<Gone> = futures_join_all(sweeps)
        .await
        .into_iter()
        .flatten()
        .collect();
    // Each announcement has its own place in its channel's order.
    let versions: HashSet<(String, i64)> = gone
        .iter()
        .map(|g| (g.channel.clone(), g.version))
        .collect();
    assert_eq!(versions.len(), gone.len(), "{gone:?}");
    let gone: Vec<(String, String)> = gone.into_iter().map(|g| (g.channel, g.user_id)).collect();
    // Bob (only on the dead node) and Dee (a node with no lease at all)
    // are gone, each reported by one sweep; Cy is still on the live node.
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert_eq!(
        gone.into_iter().collect::<HashSet<_>>(),
        HashSet::from([
            ("presence-x".to_string(), "bob".to_string()),
            ("presence-y".to_string(), "dee".to_string())
        ])
    );
    let left: Vec<String> = presence::members(&db, "presence-x")
        .await
        .expect("members")
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(left, ["cy", "ann"]);
    // The dead node is forgotten once its rows are gone; the live one stays.
    assert_eq!(nodes::forget_dead(&db, now).await.expect("forget"), 1);
    let live: Vec<String> = nodes::live(&db, now)
        .await
        .expect("live")
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    assert_eq!(live, ["live"]);
    // A lease that lapsed cannot be renewed: the node must register again.
    assert!(nodes::renew(&db, "live", now, now + 10_000)
        .await
        .expect("renew"));
    nodes::expire(&db, "live").await.expect("expire");
    assert!(!nodes::renew(&db, "live", now, now + 10_000)
        .await
        .expect("renew"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_channel_is_occupied_and_vacated_once_for_the_cluster() {
    let (db, _t) = db().await;
    let now = now_ms();
    let occupies = (0..8).map(|i| {
        let db = db.clone();
        async move {
            occupancy::occupy(&db, &format!("n{i}"), "chan")
                .await
                .expect("occupy")
        }
    });
    let firsts = futures_join_all(occupies)
        .await
        .into_iter()
        .filter(|f| *f)
        .count();
    assert_eq!(firsts, 1, "channel_occupied must be decided once");
    // The same node again changes nothing.
    assert!(!occupancy::occupy(&db, "n0", "chan").await.expect("again"));
    let vacates = (1..8).map(|i| {
        let db = db.clone();
        async move {
            occupancy::vacate(&db, &format!("n{i}"), "chan")
                .await
                .expect("vacate")
        }
    });
    assert_eq!(
        futures_join_all(vacates)
            .await
            .into_iter()
            .filter(|l| *l)
            .count(),
        0,
        "n0 still follows it"
    );
    // n0 dies (it never had a lease): swept once, whoever sweeps.
    nodes::register(&db, "n9", "n9:1", None, now, now + 10_000)
        .await
        .expect("live");
    assert!(occupancy::occupy(&db, "n9", "other").await.expect("occupy"));
    let sweeps = (0..4).map(|_| {
        let db = db.clone();
        async move { occupancy::sweep(&db, now).await.expect("sweep") }
    });
    let vacated: Vec<String> = futures_join_all(sweeps)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(vacated, ["chan"], "the live node's channel stays");
}
