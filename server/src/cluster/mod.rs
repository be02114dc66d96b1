//! Several `lockstep serve` processes as one fleet (docs/deploy.md): what
//! each node does so that the others see what it sees.
//!
//! - [`guard`]: refuses, at start-up and in a sentence, what would
//!   half-work: a second process on one SQLite file, a second process on
//!   PostgreSQL without NATS, two nodes with one MQTT client id.
//! - [`bus`]: NATS between nodes (log wake-ups, frames, occupancy).
//! - [`lease`]: this node's lease in the database, renewed; the sweep
//!   that removes a dead node's presence members.
//!
//! The log, the outbox and the timers need nothing more: they live in the
//! database and are claimed with leases (docs/architecture.md).

pub mod bus;
pub mod guard;
pub mod lease;

use lockstep_core::cluster::presence::Gone;

/// What the other nodes (and this node's lease keeper) tell the hub.
#[derive(Debug)]
pub enum Inbound {
    /// These channels were appended to elsewhere: read them.
    Wake(Vec<String>),
    /// Read every followed channel (NATS reconnected; the periodic check).
    WakeAll,
    /// A frame for the local subscribers of a channel.
    Frame(bus::FrameMsg),
    /// Another node asks which channels this node's sockets follow.
    Occupancy {
        prefix: Option<String>,
        reply: String,
    },
    /// What a dead node leaves behind, swept by this node (which alone
    /// announces it): users whose last connection was there
    /// (`member_removed`), channels nobody follows any more
    /// (`channel_vacated`).
    Gone(Swept),
    /// This node's lease ran out while it lived (a long pause, the
    /// database out of reach): the others have swept its members, so
    /// every socket reconnects and joins again.
    LeaseLost,
}

/// What one sweep removed.
#[derive(Debug, Default)]
pub struct Swept {
    pub members: Vec<Gone>,
    pub vacated: Vec<String>,
}

impl Swept {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.vacated.is_empty()
    }
}

/// Who this node is.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Fresh at every start (a restarted node is a new node; its old
    /// rows are swept).
    pub node_id: std::sync::Arc<str>,
    /// For people: host and port.
    pub name: String,
    pub mqtt_client_id: Option<String>,
}

impl NodeInfo {
    pub fn new(addr: std::net::SocketAddr, mqtt_client_id: Option<String>) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        NodeInfo {
            node_id: uuid::Uuid::now_v7().simple().to_string().into(),
            name: format!("{host}:{}", addr.port()),
            mqtt_client_id,
        }
    }
}
