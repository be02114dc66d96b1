//! Lockers provisioning themselves (register on the provisioning listener,
//! get an account of their own; see docs/mqtt.md), the
//! tenant's provisioning keys, the per-locker broker accounts, and
//! decommissioning.
//!
//! A locker announces itself (serial, model, firmware, compartments, maybe a
//! provisioning key). [`provision`] records every step as an event on the
//! bank's stream — requested, validated, credentials created, credentials
//! delivered — or a `LockerProvisioningFailed` with a reason code, and
//! returns the reply the locker gets. The first heartbeat on the new
//! credentials records `LockerWasProvisioned` (see `lockers::heartbeat`).
//!
//! Who may provision: a bank pre-registered by serial, or, for an unknown
//! serial, a locker presenting a valid provisioning key of a tenant (the
//! bank is then registered with what the locker reported). A bank that is
//! provisioned or decommissioned cannot be provisioned again. Before that,
//! a retry from the same client id gets the same credentials again (the
//! password is derived from the session, see [`locker_password`]); a
//! registration from a new session rotates the password of the same
//! account.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    db::ExecuteWrite,
    error::{CoreError, CoreResult},
    eventstore::events::{DomainEvent, Metadata},
    eventstore::store::{self, begin_write},
    gateway::LockerAccount,
    identity::accounts::parse_uuid,
    identity::caller::Caller,
    identity::tokens::{hash_token, random_secret},
    lockers::{self, NewBank, NewCompartment},
    now_ms,
    services::Services,
};

/// Provisioning keys are `lpk_` and 40 base62 characters.
pub const KEY_PREFIX: &str = "lpk_";
pub use lockstep_wire::mqtt::{ProvisioningFailure, ProvisioningReply as Reply, REPLY_VERSION};

/// A locker's registration, as parsed off `provisioning/register`.
#[derive(Clone, Debug)]
pub struct Registration {
    pub client_id: String,
    pub serial: String,
    pub name: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub compartments: Vec<NewCompartment>,
    pub provisioning_key: Option<String>,
}

/// The broker username (and bound client id) of a bank.
pub fn username_of(bank_id: Uuid) -> String {
    format!("locker-{bank_id}")
}

/// Why an attempt was refused before any credentials existed.
struct Refusal {
    bank_id: Option<Uuid>,
    reason: ProvisioningFailure,
    detail: Option<String>,
}

struct Admitted {
    bank_id: Uuid,
    tenant_id: Uuid,
    /// The bank's stream version once the admission was recorded.
    version: i64,
}

/// Runs one provisioning attempt to its end and returns the reply that was
/// (or could not be) delivered. Every path ends in an event: delivered, or
/// `LockerProvisioningFailed` with a reason.
pub async fn provision(s: &Services, reg: Registration) -> CoreResult<Reply> {
    let attempt_id = Uuid::now_v7();
    // The span is attached to the future (never entered across an await),
    // so each log line names its own attempt only.
    let span = tracing::info_span!("provisioning", %attempt_id, serial = %reg.serial, client_id = %reg.client_id);
    provision_attempt(s, reg, attempt_id).instrument(span).await
}

async fn provision_attempt(s: &Services, reg: Registration, attempt_id: Uuid) -> CoreResult<Reply> {
    let admitted = match admit(s, &reg, attempt_id).await? {
        Ok(a) => a,
        Err(refusal) => {
            tracing::warn!(reason = %refusal.reason, detail = ?refusal.detail, "provisioning refused");
            metrics::counter!("lockstep_provisioning_total", "outcome" => refusal.reason.as_str())
                .increment(1);
            let reply = Reply::refused(attempt_id, refusal.bank_id, refusal.reason, refusal.detail);
            deliver(s, &reg.client_id, &reply).await;
            return Ok(reply);
        }
    };
    let Admitted {
        bank_id,
        tenant_id,
        version: admitted_at,
    } = admitted;
    let meta = Metadata::system(tenant_id, attempt_id);
    let fail =
        |reason: ProvisioningFailure, detail: String| DomainEvent::LockerProvisioningFailed {
            bank_id: Some(bank_id),
            tenant_id: Some(tenant_id),
            attempt_id,
            serial: reg.serial.clone(),
            reason,
            detail: Some(detail),
        };

    let account = LockerAccount {
        bank_id,
        username: username_of(bank_id),
        password: locker_password(s, bank_id, &reg.client_id).await?,
    };
    // From making the account to recording it (or disabling it again),
    // a decommission's or reset's disable job waits, and this waits for
    // one under way.
    let turn = s.account_turns.take(bank_id).await;
    if let Err(e) = crate::gateway::call_gateway(
        s.settings.gateway_deadline,
        "create_account",
        s.gateway.create_account(&account),
    )
    .await
    {
        tracing::error!(error = %e, "creating the locker's broker account failed");
        record(
            s,
            bank_id,
            vec![fail(ProvisioningFailure::BrokerError, e.0.clone())],
            &meta,
        )
        .await?;
        metrics::counter!("lockstep_provisioning_total", "outcome" => ProvisioningFailure::BrokerError.as_str()).increment(1);
        let reply = Reply::refused(
            attempt_id,
            Some(bank_id),
            ProvisioningFailure::BrokerError,
            None,
        );
        deliver(s, &reg.client_id, &reply).await;
        return Ok(reply);
    }
    store_account(s, &account).await?;
    let created = vec![DomainEvent::LockerCredentialsCreated {
        bank_id,
        tenant_id,
        attempt_id,
        username: account.username.clone(),
    }];
    if let Some(by) = record_unless_superseded(s, bank_id, admitted_at, created, &meta).await? {
        // A decommission or reset was committed while this attempt ran
        // (after its admission): the account this attempt just enabled
        // must not outlive it.
        let reason = if by == "LockerDecommissioned" {
            ProvisioningFailure::Decommissioned
        } else {
            ProvisioningFailure::Superseded
        };
        let detail = format!("{by} was recorded while this attempt ran; ask again");
        tracing::warn!(%by, "provisioning attempt superseded; its account is disabled again");
        disable_stored_account(s, &account.username).await?;
        if let Err(e) = crate::gateway::call_gateway(
            s.settings.gateway_deadline,
            "disable_account",
            s.gateway.disable_account(&account.username),
        )
        .await
        {
            // The stored account is disabled, so the embedded broker
            // refuses it; Mosquitto's stays enabled until the next
            // decommission or reset disables it again.
            tracing::error!(error = %e, "disabling a superseded attempt's account failed");
        }
        drop(turn);
        record(s, bank_id, vec![fail(reason, detail.clone())], &meta).await?;
        metrics::counter!("lockstep_provisioning_total", "outcome" => reason.as_str()).increment(1);
        let reply = Reply::refused(attempt_id, Some(bank_id), reason, Some(detail));
        deliver(s, &reg.client_id, &reply).await;
        return Ok(reply);
    }
    drop(turn);

    let reply = Reply {
        v: REPLY_VERSION,
        ok: true,
        attempt_id,
        locker_bank_id: Some(bank_id),
        username: Some(account.username.clone()),
        password: Some(account.password.clone()),
        error: None,
        detail: None,
        broker_url: s.locker_broker_url.as_deref().map(str::to_string),
    };
    let bytes = serde_json::to_vec(&reply).map_err(|e| CoreError::Invalid(e.to_string()))?;
    match crate::gateway::call_gateway(
        s.settings.gateway_deadline,
        "deliver_reply",
        s.gateway.deliver_reply(&reg.client_id, &bytes),
    )
    .await
    {
        Ok(()) => {
            record(
                s,
                bank_id,
                vec![DomainEvent::LockerCredentialsDelivered {
                    bank_id,
                    tenant_id,
                    attempt_id,
                }],
                &meta,
            )
            .await?;
            metrics::counter!("lockstep_provisioning_total", "outcome" => "delivered").increment(1);
            tracing::info!(%bank_id, "credentials delivered");
        }
        Err(e) => {
            tracing::error!(error = %e, "delivering the credentials failed");
            record(
                s,
                bank_id,
                vec![fail(ProvisioningFailure::DeliveryFailed, e.0)],
                &meta,
            )
            .await?;
            metrics::counter!("lockstep_provisioning_total", "outcome" => ProvisioningFailure::DeliveryFailed.as_str())
                .increment(1);
        }
    }
    Ok(reply)
}

async fn deliver(s: &Services, client_id: &str, reply: &Reply) {
    match serde_json::to_vec(reply) {
        Ok(bytes) => {
            if let Err(e) = crate::gateway::call_gateway(
                s.settings.gateway_deadline,
                "deliver_reply",
                s.gateway.deliver_reply(client_id, &bytes),
            )
            .await
            {
                tracing::warn!(error = %e, "the refusal could not be delivered");
            }
        }
        Err(e) => tracing::error!(error = %e, "serialising a reply failed"),
    }
}

/// Appends `events` at the bank's head, retrying on conflicts.
async fn record(
    s: &Services,
    bank_id: Uuid,
    events: Vec<DomainEvent>,
    meta: &Metadata,
) -> CoreResult<()> {
    append(s, bank_id, None, events, meta).await.map(|_| ())
}

/// Appends `events` at the bank's head unless a decommission or reset was
/// recorded after version `after`; then records nothing and names it.
async fn record_unless_superseded(
    s: &Services,
    bank_id: Uuid,
    after: i64,
    events: Vec<DomainEvent>,
    meta: &Metadata,
) -> CoreResult<Option<String>> {
    append(s, bank_id, Some(after), events, meta).await
}

/// The two above: with `superseded_after`, first looks for a decommission
/// or reset recorded after that version (and then appends nothing).
async fn append(
    s: &Services,
    bank_id: Uuid,
    superseded_after: Option<i64>,
    events: Vec<DomainEvent>,
    meta: &Metadata,
) -> CoreResult<Option<String>> {
    for _ in 0..store::MAX_RETRIES {
        let (mut tx, version) = store::begin_on(&s.db, bank_id).await?;
        if let Some(after) = superseded_after {
            let superseded = sqlx::query(
                "SELECT event_type FROM stored_events WHERE aggregate_uuid = $1 AND aggregate_version > $2 \
                 AND event_type IN ('LockerDecommissioned', 'LockerProvisioningReset') \
                 ORDER BY aggregate_version LIMIT 1",
            )
            .bind(bank_id.to_string())
            .bind(after)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = superseded {
                return Ok(Some(row.try_get("event_type")?));
            }
        }
        let written = store::commit_at(
            s,
            tx,
            "locker_bank",
            bank_id,
            version,
            events.clone(),
            meta,
            now_ms(),
        )
        .await?;
        if written.is_some() {
            return Ok(None);
        }
    }
    Err(CoreError::Conflict(format!(
        "locker bank {bank_id} kept changing"
    )))
}

/// Marks a stored locker account disabled (the embedded broker's logins
/// read it).
async fn disable_stored_account(s: &Services, username: &str) -> CoreResult<()> {
    sqlx::query(
        "UPDATE broker_accounts SET disabled_at = $1 WHERE username = $2 AND disabled_at IS NULL",
    )
    .bind(now_ms())
    .bind(username)
    .execute_write(&s.db)
    .await?;
    Ok(())
}

/// The locker's password for this provisioning session: an HMAC of the
/// bank and the locker's client id under a server secret. A registration
/// retried by the same session (the locker missed the reply) gets the same
/// password, so two replies never disagree; a new session rotates it.
async fn locker_password(s: &Services, bank_id: Uuid, client_id: &str) -> CoreResult<String> {
    use hmac::{Hmac, Mac};
    let key = server_secret(s, "locker_password_key").await?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
        .map_err(|e| CoreError::Invalid(e.to_string()))?;
    mac.update(format!("{bank_id}:{client_id}").as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// A random secret the server made for itself, created on first use.
async fn server_secret(s: &Services, name: &str) -> CoreResult<String> {
    crate::secrets::get_or_create(&s.db, name, || random_secret("", 64)).await
}

/// Keeps a hash of the locker's secret (the embedded broker checks logins
/// against it) and re-enables the account.
async fn store_account(s: &Services, account: &LockerAccount) -> CoreResult<()> {
    let hash = hash_token(&account.password);
    sqlx::query(
        "INSERT INTO broker_accounts (username, bank_id, secret_hash, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (username) DO UPDATE SET secret_hash = excluded.secret_hash, disabled_at = NULL",
    )
    .bind(&account.username)
    .bind(account.bank_id.to_string())
    .bind(hash)
    .bind(now_ms())
    .execute_write(&s.db)
    .await?;
    Ok(())
}

/// Whether `username`/`password` is a live locker account and `client_id`
/// the one bound to it (the embedded broker's login check).
pub async fn check_locker_login(
    s: &Services,
    client_id: &str,
    username: &str,
    password: &str,
) -> CoreResult<bool> {
    if client_id != username {
        return Ok(false);
    }
    let row = sqlx::query(
        "SELECT secret_hash FROM broker_accounts WHERE username = $1 AND disabled_at IS NULL",
    )
    .bind(username)
    .fetch_optional(&s.db.pool)
    .await?;
    Ok(match row {
        Some(row) => {
            let stored: String = row.try_get("secret_hash")?;
            crate::identity::tokens::same_digest(&stored, &hash_token(password))
        }
        None => false,
    })
}

/// Decides whether the attempt may go on, recording `...Requested` and
/// `...Validated` (or `...Failed`) in one transaction.
async fn admit(
    s: &Services,
    reg: &Registration,
    attempt_id: Uuid,
) -> CoreResult<Result<Admitted, Refusal>> {
    let mut last_err = None;
    for _ in 0..store::MAX_RETRIES {
        match try_admit(s, reg, attempt_id).await {
            Ok(outcome) => return Ok(outcome),
            // Another attempt for the same serial won the race: look again.
            Err(CoreError::VersionConflict { .. }) => last_err = None,
            Err(CoreError::Database(e)) if CoreError::is_unique_violation(&e) => {
                last_err = Some(CoreError::Database(e))
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| CoreError::Conflict("provisioning kept conflicting".into())))
}

async fn try_admit(
    s: &Services,
    reg: &Registration,
    attempt_id: Uuid,
) -> CoreResult<Result<Admitted, Refusal>> {
    let now = now_ms();
    let mut tx = begin_write(&s.db).await?;
    // A bank's id never changes: find it, read its stream's version, and
    // only then its state, so a decision made on that state conflicts with
    // anything committed since (a decommission, a reset, the first
    // heartbeat) instead of landing after it (see `store::begin_on`).
    let known_id = sqlx::query("SELECT id FROM locker_banks WHERE serial = $1")
        .bind(&reg.serial)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| parse_uuid(&r.try_get::<String, _>("id")?))
        .transpose()?;
    let known_version = match known_id {
        Some(id) => Some((id, store::stream_version(&mut tx, id).await?)),
        None => None,
    };
    let bank = sqlx::query("SELECT id, tenant_id, state FROM locker_banks WHERE serial = $1")
        .bind(&reg.serial)
        .fetch_optional(&mut *tx)
        .await?;
    let key_tenant = match &reg.provisioning_key {
        Some(key) => Some(key_tenant(&mut tx, key, now).await?),
        None => None,
    };
    let requested = |bank_id, tenant_id, via_key| DomainEvent::LockerProvisioningRequested {
        bank_id,
        tenant_id,
        attempt_id,
        client_id: reg.client_id.clone(),
        model: reg.model.clone(),
        firmware: reg.firmware.clone(),
        via_key,
    };
    let refuse = |bank_id, tenant_id, reason: ProvisioningFailure, detail: Option<String>| {
        (
            DomainEvent::LockerProvisioningFailed {
                bank_id,
                tenant_id,
                attempt_id,
                serial: reg.serial.clone(),
                reason,
                detail: detail.clone(),
            },
            Refusal {
                bank_id,
                reason,
                detail,
            },
        )
    };

    let (bank_id, tenant_id, mut events, refusal) = match (bank, key_tenant) {
        (Some(row), key) => {
            let bank_id = parse_uuid(&row.try_get::<String, _>("id")?)?;
            let tenant_id = parse_uuid(&row.try_get::<String, _>("tenant_id")?)?;
            let state: String = row.try_get("state")?;
            let via_key = matches!(key, Some(Some(_)));
            let mut events = vec![requested(bank_id, tenant_id, via_key)];
            let refusal = match (state.as_str(), key) {
                ("provisioned", _) => Some(refuse(
                    Some(bank_id),
                    Some(tenant_id),
                    ProvisioningFailure::AlreadyProvisioned,
                    Some("this locker bank is provisioned; an admin must reset it first".into()),
                )),
                ("decommissioned", _) => Some(refuse(
                    Some(bank_id),
                    Some(tenant_id),
                    ProvisioningFailure::Decommissioned,
                    None,
                )),
                (_, Some(None)) => Some(refuse(
                    Some(bank_id),
                    Some(tenant_id),
                    ProvisioningFailure::InvalidKey,
                    None,
                )),
                (_, Some(Some(t))) if t != tenant_id => Some(refuse(
                    Some(bank_id),
                    Some(tenant_id),
                    ProvisioningFailure::InvalidKey,
                    Some("the key belongs to another tenant".into()),
                )),
                _ => None,
            };
            match refusal {
                Some((failed, refusal)) => {
                    events.push(failed);
                    (Some(bank_id), Some(tenant_id), events, Some(refusal))
                }
                None => (Some(bank_id), Some(tenant_id), events, None),
            }
        }
        (None, Some(Some(tenant_id))) => {
            // A new bank, admitted by the tenant's key.
            let new = NewBank {
                serial: reg.serial.clone(),
                name: reg.name.clone().unwrap_or_else(|| reg.serial.clone()),
                location: None,
                compartments: reg.compartments.clone(),
            };
            let bank_id = Uuid::now_v7();
            let checked = lockers::check_text("serial", &new.serial, 64)
                .and_then(|serial| Ok((serial, lockers::check_text("name", &new.name, 120)?)))
                .and_then(|(serial, name)| Ok((serial, name, lockers::validate(&new)?)));
            match checked {
                Ok((serial, name, compartments)) => (
                    Some(bank_id),
                    Some(tenant_id),
                    vec![
                        DomainEvent::LockerBankRegistered {
                            bank_id,
                            tenant_id,
                            serial,
                            name,
                            location: None,
                            compartments,
                        },
                        requested(bank_id, tenant_id, true),
                    ],
                    None,
                ),
                Err(e) => {
                    let (failed, refusal) = refuse(
                        None,
                        Some(tenant_id),
                        ProvisioningFailure::InvalidRegistration,
                        Some(e.to_string()),
                    );
                    (None, Some(tenant_id), vec![failed], Some(refusal))
                }
            }
        }
        (None, Some(None)) => {
            let (failed, refusal) = refuse(None, None, ProvisioningFailure::InvalidKey, None);
            (None, None, vec![failed], Some(refusal))
        }
        (None, None) => {
            let (failed, refusal) = refuse(
                None,
                None,
                ProvisioningFailure::UnknownSerial,
                Some("no locker bank has this serial and no provisioning key was given".into()),
            );
            (None, None, vec![failed], Some(refusal))
        }
    };
    if refusal.is_none() {
        if let (Some(bank_id), Some(tenant_id)) = (bank_id, tenant_id) {
            events.push(DomainEvent::LockerProvisioningValidated {
                bank_id,
                tenant_id,
                attempt_id,
            });
        }
    }
    // An attempt that names no bank is its own stream.
    let (aggregate_type, aggregate) = match bank_id {
        Some(id) => ("locker_bank", id),
        None => ("provisioning_attempt", attempt_id),
    };
    let meta = Metadata::system(tenant_id.unwrap_or(Uuid::nil()), attempt_id);
    let version = match known_version {
        Some((id, v)) if id == aggregate => v,
        // A new bank or an attempt of its own: a fresh stream.
        _ => store::stream_version(&mut tx, aggregate).await?,
    };
    let admitted_at = version + events.len() as i64;
    let written = store::append_live(
        &mut tx,
        s.mode(),
        aggregate_type,
        aggregate,
        version,
        events,
        &meta,
        now,
    )
    .await?;
    tx.commit().await?;
    s.published(&written);
    Ok(match (refusal, bank_id, tenant_id) {
        (None, Some(bank_id), Some(tenant_id)) => Ok(Admitted {
            bank_id,
            tenant_id,
            version: admitted_at,
        }),
        (Some(r), _, _) => Err(r),
        _ => Err(Refusal {
            bank_id,
            reason: ProvisioningFailure::Internal,
            detail: None,
        }),
    })
}

/// `Some(tenant)` for a live key, `None` for an unknown, revoked or expired one.
async fn key_tenant(
    conn: &mut sqlx::AnyConnection,
    key: &str,
    now: i64,
) -> CoreResult<Option<Uuid>> {
    if !key.starts_with(KEY_PREFIX) || key.len() > 100 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT tenant_id FROM provisioning_keys WHERE key_hash = $1 AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(hash_token(key))
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| parse_uuid(&r.try_get::<String, _>("tenant_id")?))
        .transpose()
}

/// A provisioning key as listed (never with its secret).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub id: Uuid,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Creates a provisioning key for the caller's tenant (admin); the secret
/// is returned once.
pub async fn create_key(
    s: &Services,
    caller: &Caller,
    name: &str,
    expires_at: Option<i64>,
) -> CoreResult<(KeyView, String)> {
    if !caller.is_admin() {
        return Err(CoreError::Forbidden(
            "only admins create provisioning keys".into(),
        ));
    }
    let name = lockers::check_text("name", name, 120)?;
    let now = now_ms();
    if expires_at.is_some_and(|e| e <= now) {
        return Err(CoreError::Invalid(
            "expires_at must be in the future".into(),
        ));
    }
    let id = Uuid::now_v7();
    let secret = random_secret(KEY_PREFIX, 40);
    sqlx::query(
        "INSERT INTO provisioning_keys (id, tenant_id, name, key_hash, created_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.to_string())
    .bind(caller.user.tenant_id.to_string())
    .bind(&name)
    .bind(hash_token(&secret))
    .bind(caller.user.id.to_string())
    .bind(now)
    .bind(expires_at)
    .execute_write(&s.db)
    .await?;
    Ok((
        KeyView {
            id,
            name,
            created_at: now,
            expires_at,
            revoked_at: None,
        },
        secret,
    ))
}

pub async fn list_keys(s: &Services, caller: &Caller) -> CoreResult<Vec<KeyView>> {
    if !caller.is_admin() {
        return Err(CoreError::Forbidden(
            "only admins see provisioning keys".into(),
        ));
    }
    let rows = sqlx::query(
        "SELECT id, name, created_at, expires_at, revoked_at FROM provisioning_keys \
         WHERE tenant_id = $1 ORDER BY created_at",
    )
    .bind(caller.user.tenant_id.to_string())
    .fetch_all(&s.db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(KeyView {
                id: parse_uuid(&r.try_get::<String, _>("id")?)?,
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
                revoked_at: r.try_get("revoked_at")?,
            })
        })
        .collect()
}

pub async fn revoke_key(s: &Services, caller: &Caller, id: Uuid) -> CoreResult<()> {
    if !caller.is_admin() {
        return Err(CoreError::Forbidden(
            "only admins revoke provisioning keys".into(),
        ));
    }
    let done = sqlx::query(
        "UPDATE provisioning_keys SET revoked_at = $1 WHERE id = $2 AND tenant_id = $3 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(id.to_string())
    .bind(caller.user.tenant_id.to_string())
    .execute_write(&s.db)
    .await?;
    if done.rows_affected() == 0 {
        return Err(CoreError::NotFound);
    }
    Ok(())
}

/// Takes a bank out of service (admin): records `LockerDecommissioned`,
/// whose reactor disables the broker account (kicking a connected locker).
pub async fn decommission(
    s: &Services,
    caller: &Caller,
    bank_id: Uuid,
    reason: &str,
) -> CoreResult<()> {
    if !caller.is_admin() {
        return Err(CoreError::Forbidden(
            "only admins decommission locker banks".into(),
        ));
    }
    let reason = lockers::check_text("reason", reason, 500)?;
    for _ in 0..store::MAX_RETRIES {
        let (mut tx, version) = store::begin_on(&s.db, bank_id).await?;
        let row = sqlx::query("SELECT state FROM locker_banks WHERE id = $1 AND tenant_id = $2")
            .bind(bank_id.to_string())
            .bind(caller.user.tenant_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(CoreError::NotFound)?;
        if row.try_get::<String, _>("state")? == "decommissioned" {
            return Err(CoreError::Conflict(
                "this locker bank is decommissioned".into(),
            ));
        }
        let event = DomainEvent::LockerDecommissioned {
            bank_id,
            tenant_id: caller.user.tenant_id,
            reason: reason.clone(),
        };
        let meta = caller.metadata();
        if store::commit_at(
            s,
            tx,
            "locker_bank",
            bank_id,
            version,
            vec![event],
            &meta,
            now_ms(),
        )
        .await?
        .is_some()
        {
            tracing::info!(%bank_id, "locker bank decommissioned");
            return Ok(());
        }
    }
    Err(CoreError::Conflict(format!(
        "locker bank {bank_id} kept changing"
    )))
}

/// Resets a bank's provisioning (admin): records `LockerProvisioningReset`,
/// whose reactor disables the old broker account (kicking a connected
/// locker); the bank is `registered` again, and the next registration (its
/// pre-registration, or a provisioning key) gets new credentials. A
/// decommissioned bank is recommissioned the same way.
pub async fn reset(s: &Services, caller: &Caller, bank_id: Uuid, reason: &str) -> CoreResult<()> {
    if !caller.is_admin() {
        return Err(CoreError::Forbidden(
            "only admins reset provisioning".into(),
        ));
    }
    let reason = lockers::check_text("reason", reason, 500)?;
    for _ in 0..store::MAX_RETRIES {
        let (mut tx, version) = store::begin_on(&s.db, bank_id).await?;
        let state: String =
            sqlx::query("SELECT state FROM locker_banks WHERE id = $1 AND tenant_id = $2")
                .bind(bank_id.to_string())
                .bind(caller.user.tenant_id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(CoreError::NotFound)?
                .try_get("state")?;
        match state.as_str() {
            "provisioned" | "provisioning_failed" | "decommissioned" => {}
            "registered" => {
                return Err(CoreError::Conflict(
                    "this locker bank has no provisioning to reset".into(),
                ))
            }
            _ => {
                return Err(CoreError::Conflict(
                    "a provisioning attempt is under way; reset once it has ended".into(),
                ))
            }
        }
        let event = DomainEvent::LockerProvisioningReset {
            bank_id,
            tenant_id: caller.user.tenant_id,
            reason: reason.clone(),
        };
        if store::commit_at(
            s,
            tx,
            "locker_bank",
            bank_id,
            version,
            vec![event],
            &caller.metadata(),
            now_ms(),
        )
        .await?
        .is_some()
        {
            tracing::info!(%bank_id, from = %state, "locker bank provisioning reset");
            return Ok(());
        }
    }
    Err(CoreError::Conflict(format!(
        "locker bank {bank_id} kept changing"
    )))
}

/// The broker username to disable for a `LockerDecommissioned` or
/// `LockerProvisioningReset` event (also marks the stored account
/// disabled, so the embedded broker refuses it). `None` when there is
/// nothing to disable any more: the bank was provisioned again since (its
/// new account must not be disabled by a job that ran late).
pub async fn account_of_event(
    s: &Services,
    event_id: Uuid,
) -> CoreResult<Option<(String, crate::gateway::AccountTurn)>> {
    let row = sqlx::query(
        "SELECT aggregate_uuid, aggregate_version FROM stored_events WHERE event_id = $1",
    )
    .bind(event_id.to_string())
    .fetch_optional(&s.db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let bank_id = parse_uuid(&row.try_get::<String, _>("aggregate_uuid")?)?;
    let version: i64 = row.try_get("aggregate_version")?;
    // Checked and disabled in the bank's turn: an attempt admitted from
    // now on makes its account only after this job's disable went out.
    let turn = s.account_turns.take(bank_id).await;
    // Admitted again after this event (only a reset lets an attempt in
    // after a decommission or reset): the account now belongs to that
    // attempt. An attempt admitted before it, finishing late, is not a
    // reason to skip.
    let reprovisioned = sqlx::query(
        "SELECT 1 AS x FROM stored_events WHERE aggregate_uuid = $1 AND aggregate_version > $2 \
         AND event_type = 'LockerProvisioningValidated'",
    )
    .bind(bank_id.to_string())
    .bind(version)
    .fetch_optional(&s.db.pool)
    .await?
    .is_some();
    if reprovisioned {
        return Ok(None);
    }
    let username = username_of(bank_id);
    disable_stored_account(s, &username).await?;
    Ok(Some((username, turn)))
}

/// One step of a bank's provisioning, as the progress page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressStep {
    /// `received`, `validated`, `credentials_created`, `delivered`,
    /// `first_heartbeat`.
    pub step: String,
    pub at: i64,
}

/// Where a bank's latest provisioning attempt stands, from its events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The latest attempt's steps so far, in order.
    pub steps: Vec<ProgressStep>,
    /// The attempt failed: the reason code, what the server said, when.
    pub failure: Option<(String, Option<String>, i64)>,
    /// The locker was heard on its own credentials.
    pub complete: bool,
}

/// The steps of provisioning, in order.
pub const PROGRESS_STEPS: [&str; 5] = [
    "received",
    "validated",
    "credentials_created",
    "delivered",
    "first_heartbeat",
];

/// The provisioning progress of a bank of `tenant_id`; `None` for a bank
/// that is not one of the tenant's.
pub async fn progress(
    s: &Services,
    tenant_id: Uuid,
    bank_id: Uuid,
) -> CoreResult<Option<Progress>> {
    if lockers::get_bank(s, tenant_id, bank_id).await?.is_none() {
        return Ok(None);
    }
    let mut conn = s.db.pool.acquire().await?;
    let events = crate::eventstore::events::load_stream(&mut conn, bank_id).await?;
    let mut p = Progress::default();
    let step = |p: &mut Progress, name: &str, at: i64| {
        p.steps.push(ProgressStep {
            step: name.into(),
            at,
        })
    };
    for e in events {
        let at = e.occurred_at;
        match e.event {
            DomainEvent::LockerProvisioningRequested { .. } => {
                // A new attempt starts over.
                p = Progress::default();
                step(&mut p, "received", at);
            }
            DomainEvent::LockerProvisioningValidated { .. } => step(&mut p, "validated", at),
            DomainEvent::LockerCredentialsCreated { .. } => step(&mut p, "credentials_created", at),
            DomainEvent::LockerCredentialsDelivered { .. } => step(&mut p, "delivered", at),
            DomainEvent::LockerWasProvisioned { .. } => {
                step(&mut p, "first_heartbeat", at);
                p.complete = true;
                p.failure = None;
            }
            DomainEvent::LockerProvisioningFailed { reason, detail, .. } => {
                p.failure = Some((reason.as_str().to_string(), detail, at));
            }
            DomainEvent::LockerProvisioningReset { .. } => p = Progress::default(),
            _ => {}
        }
    }
    Ok(Some(p))
}
