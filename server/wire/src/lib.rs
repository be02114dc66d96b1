//! lockstep-wire: every name that crosses a process boundary, written once.
//! The core, the MQTT bridge, the simulator and the UI (server and browser
//! builds) all use these types, so a renamed status, reason, channel or
//! topic breaks the build of all of them together instead of silently
//! diverging. serde only: no sqlx, no tokio; it builds for wasm.
//!
//! Map:
//! - [`open`]: the open command's statuses and its denial and failure
//!   reasons.
//! - [`channel`]: the channels of the channel log, as clients name them.
//! - [`envelope`]: what a client receives from the log (live or polled),
//!   the actor behind it, and the typed bodies clients read.
//! - [`mqtt`]: the locker topics and their JSON payloads, parsed strictly.
//! - [`record`]: the version guard on admin-edited records: versions,
//!   `RecordUpdated`, the stale-edit verdict.
//! - `contract`: every wire name checked against its literal at compile
//!   time: changing one breaks the build of every crate that uses them.

#[macro_use]
mod wire_enum;

pub mod channel;
mod contract;
pub mod envelope;
pub mod mqtt;
pub mod open;
pub mod record;

pub use channel::{Channel, PresenceChannel, RecordType, EDITING_MARK};
pub use envelope::{Actor, Envelope, EnvelopeMeta, Since, Subject};
pub use open::{DenialReason, FailureReason, OpenReason, OpenStatus};

/// A wire name that matched no variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a known {kind} (one of: {expected})")]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
    pub expected: String,
}
