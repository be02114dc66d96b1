//! The locker port: what the core needs from the lockers' side of the
//! world ([`LockerGateway`]: deliver a command, manage a locker's broker
//! account, answer a provisioning request), the types it speaks, and
//! [`RecordingGateway`], which sends nothing and records everything, and
//! [`AccountTurns`], which orders one bank's account changes. The
//! MQTT bridge (`lockstep_server::mqtt`) is the real implementation.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What the locker receives (docs/mqtt.md, `CommandPayload` in lockstep-wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenCommand {
    pub command_id: Uuid,
    pub locker_bank_id: Uuid,
    pub serial: String,
    pub compartment: i64,
    pub issued_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GatewayError(pub String);

/// A locker's own broker account, as created during provisioning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockerAccount {
    pub bank_id: Uuid,
    /// `locker-{bank_id}`; also the only client id it may connect with.
    pub username: String,
    pub password: String,
}

/// What the lockers' side of the world must do: deliver commands, manage
/// per-locker broker accounts, answer provisioning requests.
#[async_trait]
pub trait LockerGateway: Send + Sync {
    /// Returns once the broker has the command (PUBACK).
    async fn send_open(&self, command: &OpenCommand) -> Result<(), GatewayError>;
    /// Creates the locker's broker account, or resets its password and
    /// enables it if it exists (a retried registration).
    async fn create_account(&self, account: &LockerAccount) -> Result<(), GatewayError>;
    /// Disables the account and disconnects a connected locker.
    async fn disable_account(&self, username: &str) -> Result<(), GatewayError>;
    /// Sends a provisioning reply to `provisioning/{client_id}/reply` and
    /// returns once the broker has it.
    async fn deliver_reply(&self, client_id: &str, reply: &[u8]) -> Result<(), GatewayError>;
}

/// Sends nothing; records every command it was given. The gateway of
/// `LOCKSTEP_MQTT=off` and of the core's tests, which inspect it.
#[derive(Debug, Default)]
pub struct RecordingGateway {
    sent: Mutex<Vec<OpenCommand>>,
    accounts: Mutex<Vec<LockerAccount>>,
    disabled: Mutex<Vec<String>>,
    replies: Mutex<Vec<(String, Vec<u8>)>>,
    failures_to_inject: AtomicUsize,
}

impl RecordingGateway {
    pub fn sent(&self) -> Vec<OpenCommand> {
        self.sent.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn accounts(&self) -> Vec<LockerAccount> {
        self.accounts.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn disabled(&self) -> Vec<String> {
        self.disabled.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Every provisioning reply, as (client id, payload).
    pub fn replies(&self) -> Vec<(String, Vec<u8>)> {
        self.replies.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn injected_failure(&self) -> Result<(), GatewayError> {
        let inject = self
            .failures_to_inject
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if inject {
            return Err(GatewayError("injected failure".into()));
        }
        Ok(())
    }

    /// Makes the next `n` sends fail (to exercise retries and dead letters).
    #[cfg(any(test, feature = "testing"))]
    pub fn fail_next(&self, n: usize) {
        self.failures_to_inject.store(n, Ordering::SeqCst);
    }
}

#[async_trait]
impl LockerGateway for RecordingGateway {
    async fn send_open(&self, command: &OpenCommand) -> Result<(), GatewayError> {
        self.injected_failure()?;
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(command.clone());
        }
        Ok(())
    }

    async fn create_account(&self, account: &LockerAccount) -> Result<(), GatewayError> {
        self.injected_failure()?;
        if let Ok(mut accounts) = self.accounts.lock() {
            accounts.push(account.clone());
        }
        Ok(())
    }

    async fn disable_account(&self, username: &str) -> Result<(), GatewayError> {
        self.injected_failure()?;
        if let Ok(mut disabled) = self.disabled.lock() {
            disabled.push(username.to_string());
        }
        Ok(())
    }

    async fn deliver_reply(&self, client_id: &str, reply: &[u8]) -> Result<(), GatewayError> {
        self.injected_failure()?;
        if let Ok(mut replies) = self.replies.lock() {
            replies.push((client_id.to_string(), reply.to_vec()));
        }
        Ok(())
    }
}

/// Calls the gateway under `CoreSettings::gateway_deadline`: a broker that
/// never answers is a failed call, not a stuck worker.
pub async fn call_gateway<T>(
    deadline: Duration,
    what: &str,
    call: impl std::future::Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => result,
        Err(_) => {
            metrics::counter!("lockstep_gateway_timeouts_total", "call" => what.to_string())
                .increment(1);
            Err(GatewayError(format!(
                "{what}: no answer within {deadline:?}"
            )))
        }
    }
}

/// One bank's broker-account changes at a time, in this process: a
/// provisioning attempt making the account and a decommission's or
/// reset's job disabling it take turns, so the broker never sees the old
/// disable after the new account was made (Mosquitto applies them in the
/// order they arrive).
#[derive(Clone, Debug, Default)]
pub struct AccountTurns {
    banks: Arc<Mutex<HashMap<Uuid, Weak<tokio::sync::Mutex<()>>>>>,
}

/// Held while it is this bank's turn.
pub type AccountTurn = tokio::sync::OwnedMutexGuard<()>;

impl AccountTurns {
    /// Waits for `bank_id`'s turn.
    pub async fn take(&self, bank_id: Uuid) -> AccountTurn {
        let lock = {
            let mut banks = self.banks.lock().unwrap_or_else(|p| p.into_inner());
            if banks.len() > 256 {
                banks.retain(|_, w| w.strong_count() > 0);
            }
            match banks.get(&bank_id).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    banks.insert(bank_id, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}
