//! The event store and what runs inside its transactions: the typed
//! events and their upcasting ([`events`]), the write path ([`store`]),
//! the projectors that keep the read models ([`projections`]), the
//! sequenced channel log ([`channels`]), group commit ([`group_commit`])
//! with its batches' writes planned per batch ([`batch`]) and ended in
//! one round trip (on PostgreSQL one statement, [`batch_end`]; on SQLite
//! one query text, [`batch_end_sqlite`], or, when that text is the whole
//! transaction, one call to the [`sqlite_direct`] writer), and the durable side-effect queues
//! written in the same transaction: the [`outbox`] and the [`timers`].
//! [`replay`] rebuilds read models from the stream.
//!
//! What runs the outbox and the timers after commit lives outside:
//! `crate::reactors` (what a job does) and `crate::workers` (the loops).

pub mod batch;
pub mod batch_end;
pub mod batch_end_sqlite;
pub mod channels;
pub mod events;
pub mod group_commit;
pub mod outbox;
pub mod projections;
pub mod replay;
pub mod sql;
pub mod sqlite_direct;
pub mod store;
pub mod timers;
