//! The locker side of the wire (docs/mqtt.md is the prose contract):
//! topics, and the JSON payloads on them, parsed strictly.

pub mod payloads;
pub mod provisioning;
pub mod topics;

pub use payloads::*;
pub use provisioning::{ProvisioningFailure, ProvisioningReply, REPLY_VERSION};
pub use topics::LockerTopic;
