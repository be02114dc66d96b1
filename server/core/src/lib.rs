//! lockstep-core: Lockstep's domain and its storage, free of HTTP, Leptos and
//! MQTT. Adapters (the axum routes, the Leptos server functions, the CLI,
//! the MQTT bridge) hold a [`Services`] and call into it. Wire names
//! (statuses, reasons, channels, envelopes, topics) come from
//! `lockstep-wire`.
//!
//! Map (each folder or file owns one concern; docs/architecture.md has the
//! data flow):
//! - [`cluster`]: what several nodes share through the database: their
//!   leases and the presence channels' members.
//! - [`db`]: connecting to SQLite or PostgreSQL, migrations, the write turn.
//! - [`eventstore`]: events, the write path, projectors, the channel log,
//!   the outbox and the timers, replay.
//! - [`identity`]: accounts, passwords, tokens, sessions, the sign-in
//!   throttle, the caller.
//! - [`inbox`]: a user's notification list (their ended commands) and
//!   its unread count.
//! - [`lockers`]: locker banks, compartments, grants, heartbeats, the
//!   offline sweep.
//! - [`opens`]: the open command, from request to `opened`/`failed`.
//! - [`provisioning`]: lockers provisioning themselves, keys, broker
//!   accounts, decommissioning.
//! - [`gateway`]: the locker port the MQTT bridge implements.
//! - [`reactors`]: what each outbox job and timer does.
//! - [`records`]: records admins edit under a version guard (stale edits
//!   refused with who changed what).
//! - [`secrets`]: secrets the server makes for itself and keeps.
//! - [`workers`]: the supervised loops that run them, and the stall report.
//! - [`services`]: the handle that bundles the above for the adapters.
//! - [`text`]: bounds on every free-text field callers send.
//! - [`error`]: the core's error type.
//! - `testing` (feature `testing`): fresh databases and users for tests.
//!
//! No module depends on itself through others (`.ci/module-cycles`
//! checks every file): the event store's modules and `identity` use
//! neither the domain commands nor the workers (only `replay` takes a
//! `Services`); `services` holds handles (database, gateway, throttle,
//! worker progress); `lockers`, `opens` and `provisioning` use `services`
//! and the store; `reactors` uses them; `workers` uses `reactors`.

pub mod cluster;
pub mod db;
pub mod error;
pub mod eventstore;
pub mod gateway;
pub mod identity;
pub mod inbox;
pub mod lockers;
pub mod opens;
pub mod provisioning;
pub mod reactors;
pub mod records;
pub mod secrets;
pub mod services;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;
pub mod webhooks;
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
