//! `lockstep serve --demo`: a few simulated locker banks (the `locker-sim`
//! library) provisioning themselves against the embedded broker, so a
//! newcomer sees live lockers at once; and provisioning keys for the CLI.

use std::{sync::Arc, time::Duration};

use locker_sim::{Behaviour, Endpoint, Identity, Stats};
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

/// Starts the demo lockers in the background.
pub async fn spawn(
    s: Services,
    broker: EmbeddedBroker,
    admin_email: &str,
) -> Result<(), CoreError> {
    let (_, key) = create_key_for(&s, admin_email, "demo").await?;
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
    for n in 1..=DEMO_BANKS {
        let who = Identity {
            serial: format!("DEMO-{n}"),
            compartments: 6,
            provisioning_key: Some(key.clone()),
            model: "SIM-6".into(),
            firmware: "sim-1.0".into(),
        };
        let (p, l, stats) = (provisioning_at.clone(), lockers_at.clone(), stats.clone());
        tokio::spawn(async move {
            match locker_sim::provision(&p, &who, Duration::from_secs(60)).await {
                Ok(creds) => {
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
                }
                // A restart: the bank exists and is provisioned already.
                Err(e) => {
                    tracing::info!(serial = %who.serial, error = %e, "demo locker not provisioned")
                }
            }
        });
    }
    tracing::info!(banks = DEMO_BANKS, "demo lockers starting");
    Ok(())
}
