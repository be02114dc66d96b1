//! What start-up refuses, in a sentence, rather than run half-working:
//!
//! - a second `serve` on one SQLite file (SQLite is single-process here:
//!   the write turn, the log's wake-ups and presence live in the process);
//! - on PostgreSQL, a node without NATS beside any other node, with or
//!   without NATS (a session advisory lock: exclusive without NATS, shared
//!   with it, so the two kinds exclude each other and crashes free it);
//! - two live nodes with one MQTT client id (the broker would keep
//!   kicking one off, and their persistent sessions would mix).

use std::{fs::File, path::PathBuf, time::Duration};

use lockstep_core::{
    cluster::nodes,
    db::{Backend, Db},
    now_ms,
};

/// Why this process must not run.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "another Lockstep server is already running on the SQLite database {path} \
         (SQLite is single-process; stop it first, or run several nodes on PostgreSQL \
         with NATS_URL: docs/deploy.md)"
    )]
    SqliteInUse { path: String },
    #[error("cannot take the lock file {path}: {reason}")]
    LockFile { path: String, reason: String },
    #[error(
        "another Lockstep node is already running on this PostgreSQL database, and \
         several nodes need NATS between them: set NATS_URL on every node (docs/deploy.md); \
         if that node's host just died, PostgreSQL frees its place within about 30 s"
    )]
    NeedsNats,
    #[error(
        "a Lockstep node without NATS_URL is already running on this PostgreSQL \
         database; give it NATS_URL too, or stop it (docs/deploy.md)"
    )]
    SingleNodeRunning,
    #[error(
        "node {other} already uses the MQTT client id {client_id:?}; give each node its \
         own MQTT_CLIENT_ID (the broker allows one connection per client id)"
    )]
    MqttClientIdTaken { other: String, client_id: String },
    #[error("SQLite is single-process: several nodes (NATS_URL) need DATABASE_URL=postgres://…")]
    ClusterOnSqlite,
    #[error(
        "several nodes (NATS_URL) need one broker they all reach: set MQTT_URL \
         (the embedded broker lives inside one process), or LOCKSTEP_MQTT=off"
    )]
    ClusterOnEmbeddedBroker,
    #[error("checking the other nodes failed: {0}")]
    Database(String),
}

/// The SQLite file behind `url`, when it is a file.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?.trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Held while this process serves a SQLite file: `{file}.serve.lock`,
/// locked exclusively (released by the OS when the process ends, however
/// it ends).
#[derive(Debug)]
pub struct SqliteLock {
    _file: File,
}

/// Takes the SQLite file's serve lock (nothing to take for other URLs).
pub fn sqlite_single_process(url: &str) -> Result<Option<SqliteLock>, Refused> {
    let Some(db_path) = sqlite_path(url) else {
        return Ok(None);
    };
    let mut lock_path = db_path.clone().into_os_string();
    lock_path.push(".serve.lock");
    let lock_path = PathBuf::from(lock_path);
    let shown = lock_path.display().to_string();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Refused::LockFile {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(SqliteLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Err(Refused::SqliteInUse {
            path: db_path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Refused::LockFile {
            path: shown,
            reason: e.to_string(),
        }),
    }
}

/// On PostgreSQL: the nodes' lock, exclusive when this node runs alone
/// (no NATS), shared when it is one of several.
pub async fn postgres_nodes(
    db: &Db,
    url: &str,
    clustered: bool,
) -> Result<Option<nodes::NodeLock>, Refused> {
    if db.backend != Backend::Postgres {
        return Ok(None);
    }
    match nodes::take_lock(url, clustered).await {
        Ok(Some(lock)) => Ok(Some(lock)),
        Ok(None) if clustered => Err(Refused::SingleNodeRunning),
        Ok(None) => Err(Refused::NeedsNats),
        Err(e) => Err(Refused::Database(e.to_string())),
    }
}

/// Refuses a second live node with `client_id`. A node that just died
/// still holds its lease for a while: that lease is waited out (at most
/// `lease` and a second) before refusing.
pub async fn unique_mqtt_client_id(
    db: &Db,
    client_id: &str,
    lease: Duration,
) -> Result<(), Refused> {
    let deadline = tokio::time::Instant::now() + lease + Duration::from_secs(1);
    loop {
        let live = nodes::live(db, now_ms())
            .await
            .map_err(|e| Refused::Database(e.to_string()))?;
        let Some(other) = live
            .into_iter()
            .find(|n| n.mqtt_client_id.as_deref() == Some(client_id))
        else {
            return Ok(());
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Refused::MqttClientIdTaken {
                other: other.name,
                client_id: client_id.to_string(),
            });
        }
        tracing::info!(other = %other.name, client_id, "a node with this MQTT client id holds a lease; waiting for it to run out (it may have just stopped)");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_read_from_urls() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/x/lockstep.db?mode=rwc"),
            Some(PathBuf::from("/tmp/x/lockstep.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:data/l.db"),
            Some(PathBuf::from("data/l.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x/y"), None);
    }

    #[test]
    fn a_second_lock_on_one_file_is_refused() {
        let dir =
            std::env::temp_dir().join(format!("lockstep-guard-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let url = format!("sqlite://{}/l.db?mode=rwc", dir.display());
        let first = sqlite_single_process(&url).expect("first").expect("a lock");
        let second = sqlite_single_process(&url).expect_err("refused");
        assert!(second.to_string().contains("already running"), "{second}");
        drop(first);
        assert!(sqlite_single_process(&url).expect("free again").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
