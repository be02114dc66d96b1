//! lockstep-core: Lockstep's domain and its storage, free of HTTP, Leptos and
//! MQTT. Adapters (the axum routes, Leptos server functions, later the MQTT
//! bridge and the realtime hub) hold a [`Services`] and call into it.
//!
//! Map:
//! - [`db`]: connecting to SQLite or PostgreSQL and running migrations.
//! - [`accounts`]: tenants, users and roles.
//! - [`password`]: argon2id hashing.
//! - [`tokens`]: API tokens and the abilities they carry.
//! - [`session_store`]: the database-backed store behind cookie sessions.
//! - [`session_auth`]: which user a session belongs to; logging in and out.
//! - [`throttle`]: login throttling per account and per client address.
//! - [`events`]: the event store (typed events, versions, upcasting).
//! - [`store`]: the write path (append + project in one transaction).
//! - [`projections`]: projectors keeping the read models.
//! - [`channels`]: the sequenced channel log, envelopes, who may read.
//! - [`outbox`], [`timers`], [`reactors`]: side effects after commit;
//!   [`workers`]: the supervised loops that run them, and the stall report.
//! - [`caller`], [`lockers`], [`opens`]: the domain commands and queries.
//! - [`provisioning`]: lockers provisioning themselves, keys, broker
//!   accounts, decommissioning.
//! - [`replay`]: rebuilding read models from the stream.
//! - [`services`]: the handle that bundles the above for the adapters.
//! - [`text`]: bounds on every free-text field callers send.
//! - [`testing`]: fresh SQLite or PostgreSQL databases for tests.

pub mod accounts;
pub mod caller;
pub mod channels;
pub mod db;
pub mod error;
pub mod events;
pub mod lockers;
pub mod opens;
pub mod outbox;
pub mod password;
pub mod projections;
pub mod provisioning;
pub mod reactors;
pub mod replay;
pub mod services;
pub mod session_auth;
pub mod session_store;
pub mod store;
pub mod testing;
pub mod text;
pub mod throttle;
pub mod timers;
pub mod tokens;
pub mod workers;

pub use error::CoreError;
/// The id type of every entity, for adapters that don't depend on `uuid`.
pub type UuidAlias = uuid::Uuid;
pub use services::Services;

/// Milliseconds since the Unix epoch: how every timestamp is stored, so the
/// same column type works on SQLite and PostgreSQL.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}
