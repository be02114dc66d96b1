//! `Caller`: who is issuing a command (the user, through a session or a
//! token) and the correlation id that follows the command everywhere.

use uuid::Uuid;

use crate::{
    eventstore::events::{Actor, Metadata},
    identity::accounts::{Role, User},
};

#[derive(Clone, Debug)]
pub struct Caller {
    pub user: User,
    pub actor: Actor,
    pub correlation_id: Uuid,
    /// The caller's WebSocket connection (`X-Socket-ID`), spared the
    /// broadcasts of what it does.
    pub socket_id: Option<String>,
    /// The caller's browser tab (`X-Tab-ID`), spared them when it polls.
    pub tab_id: Option<String>,
}

impl Caller {
    pub fn new(user: User, actor: Actor) -> Self {
        Self {
            user,
            actor,
            correlation_id: Uuid::now_v7(),
            socket_id: None,
            tab_id: None,
        }
    }

    /// The same caller, its broadcasts sparing WebSocket `socket_id`.
    pub fn with_socket_id(mut self, socket_id: Option<String>) -> Self {
        self.socket_id = socket_id;
        self
    }

    /// The same caller, its broadcasts sparing tab `tab_id` when it polls.
    pub fn with_tab_id(mut self, tab_id: Option<String>) -> Self {
        self.tab_id = tab_id;
        self
    }

    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    pub fn metadata(&self) -> Metadata {
        Metadata {
            correlation_id: self.correlation_id,
            causation_id: None,
            actor: self.actor.clone(),
            tenant_id: self.user.tenant_id,
            socket_id: self.socket_id.clone(),
            tab_id: self.tab_id.clone(),
            quiet: false,
        }
    }
}
