//! `lockstep serve --demo`: a few simulated locker banks (the `locker-sim`
//! library) provisioning themselves against the embedded broker, so a
//! newcomer sees live lockers at once; and the CLI's provisioning helpers
//! (creating a key, resetting a bank's provisioning).

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use locker_sim::{Behaviour, Credentials, Endpoint, Identity, Stats};
use lockstep_core::{
    eventstore::events::Actor,
    identity::accounts::find_user_by_email,
    identity::caller::Caller,
    provisioning::{self, KeyView},
    CoreError, Services,
};

use crate::mqtt::embedded::{EmbeddedBroker, PROVISIONING_USER};

/// How many simulated banks the demo starts.
pub const DEMO_BANKS: u32 = 3;

/// Creates a provisioning key for the tenant of the admin `email`.
pub async fn create_key_for(
    s: &Services,
    email: &str,
    name: &str,
) -> Result<(KeyView, String), CoreError> {
    let user = find_user_by_email(&s.db, email)
        .await?
        .ok_or_else(|| CoreError::Invalid(format!("no user {email}")))?;
    let caller = Caller::new(user.clone(), Actor::User { id: user.id });
    provisioning::create_key(s, &caller, name, None).await
}

/// Resets the provisioning of the bank `serial` in the tenant of the admin
/// `email` (the CLI's `locker reset-provisioning`); returns the bank's id.
pub async fn reset_provisioning(
    s: &Services,
    email: &str,
    serial: &str,
    reason: &str,
) -> Result<lockstep_core::UuidAlias, CoreError> {
    let user = find_user_by_email(&s.db, email)
        .await?
        .ok_or_else(|| CoreError::Invalid(format!("no user {email}")))?;
    let caller = Caller::new(user.clone(), Actor::User { id: user.id });
    let bank = lockstep_core::lockers::list_banks(s, user.tenant_id)
        .await?
        .into_iter()
        .find(|b| b.serial == serial)
        .ok_or(CoreError::NotFound)?;
    provisioning::reset(s, &caller, bank.id, reason).await?;
    Ok(bank.id)
}

/// Where the demo lockers keep the accounts they were given, as a real
/// locker keeps its credentials in flash: a provisioned bank is refused a
/// second provisioning, so without them a restart would leave the demo
/// banks offline.
const CREDENTIALS_FILE: &str = "demo-lockers.json";

type Saved = HashMap<String, Credentials>;

fn load(path: &Path) -> Saved {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn save(path: &Path, saved: &Saved) {
    let written = serde_json::to_vec_pretty(saved)
        .map_err(|e| e.to_string())
        .and_then(|bytes| std::fs::write(path, bytes).map_err(|e| e.to_string()));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot keep the demo lockers' credentials");
    }
}

/// Starts the demo lockers in the background: each provisions itself once
/// (with a provisioning key of the admin's tenant) and reuses its account
/// on later starts.
pub async fn spawn(
    s: Services,
    broker: EmbeddedBroker,
    admin_email: &str,
    data_dir: &Path,
) -> Result<(), CoreError> {
    let path = data_dir.join(CREDENTIALS_FILE);
    let saved = Arc::new(Mutex::new(load(&path)));
    let serials: Vec<String> = (1..=DEMO_BANKS).map(|n| format!("DEMO-{n}")).collect();
    let needs_key = {
        let known = saved.lock().map(|m| m.len()).unwrap_or(0);
        known < serials.len()
    };
    let key = if needs_key {
        Some(create_key_for(&s, admin_email, "demo").await?.1)
    } else {
        None
    };
    let provisioning_at = Endpoint {
        host: broker.addr.ip().to_string(),
        port: broker.addr.port(),
        username: Some(PROVISIONING_USER.into()),
        password: Some(broker.provisioning_password.clone()),
    };
    let lockers_at = Endpoint {
        username: None,
        password: None,
        ..provisioning_at.clone()
    };
    let stats = Arc::new(Stats::default());
    for serial in serials {
        let who = Identity {
            serial: serial.clone(),
            compartments: 6,
            provisioning_key: key.clone(),
            model: "SIM-6".into(),
            firmware: "sim-1.0".into(),
        };
        let (p, l, stats) = (provisioning_at.clone(), lockers_at.clone(), stats.clone());
        let (saved, path) = (saved.clone(), path.clone());
        tokio::spawn(async move {
            let known = saved.lock().ok().and_then(|m| m.get(&serial).cloned());
            let creds = match known {
                Some(creds) => creds,
                None => match locker_sim::provision(&p, &who, Duration::from_secs(60)).await {
                    Ok(creds) => {
                        if let Ok(mut m) = saved.lock() {
                            m.insert(serial.clone(), creds.clone());
                            save(&path, &m);
                        }
                        creds
                    }
                    Err(e) => {
                        return tracing::warn!(%serial, error = %e, "demo locker not provisioned")
                    }
                },
            };
            let behaviour = Behaviour {
                latency: Duration::from_millis(600),
                failure_rate: 0.1,
                heartbeat: Duration::from_secs(20),
                report_doors: true,
                ..Behaviour::default()
            };
            let locker = locker_sim::run(&l, creds, behaviour, stats);
            // Runs for the life of the process.
            std::mem::forget(locker);
        });
    }
    tracing::info!(banks = DEMO_BANKS, "demo lockers starting");
    Ok(())
}
