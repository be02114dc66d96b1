//! Projectors: keep the read models in step with the event stream, inside
//! the transaction that appends the events. Live, they also append the
//! channel-log notifications and schedule side effects (outbox rows,
//! timers); during replay they only rebuild the read models.

use serde_json::json;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::{
    channels::{Channel, Notification, Subject},
    error::{CoreError, CoreResult},
    events::{DomainEvent, StoredEvent},
    outbox, timers,
};

/// Live: read models + channel log + side effects. Replay: read models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Live { open_timeout_ms: i64 },
    Replay,
}

/// A projector: a name, the tables it owns, and the events it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projector {
    LockerBanks,
    Grants,
    OpenRequests,
}

impl Projector {
    pub const ALL: [Projector; 3] = [
        Projector::LockerBanks,
        Projector::Grants,
        Projector::OpenRequests,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Projector::LockerBanks => "locker_banks",
            Projector::Grants => "grants",
            Projector::OpenRequests => "open_requests",
        }
    }

    pub fn parse(name: &str) -> CoreResult<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                CoreError::Invalid(format!(
                    "unknown projector {name:?}; known: locker_banks, grants, open_requests"
                ))
            })
    }

    /// Empties the projector's read model before a replay.
    pub async fn reset(self, conn: &mut AnyConnection) -> CoreResult<()> {
        let statements: &[&str] = match self {
            Projector::LockerBanks => &["DELETE FROM compartments", "DELETE FROM locker_banks"],
            Projector::Grants => &["DELETE FROM grants"],
            Projector::OpenRequests => &[
                "DELETE FROM open_requests",
                "UPDATE compartments SET latest_status = NULL, latest_command_id = NULL",
            ],
        };
        for sql in statements {
            sqlx::query(sql).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Applies one event to this projector's read model.
    pub async fn apply(self, conn: &mut AnyConnection, ev: &StoredEvent) -> CoreResult<()> {
        match (self, &ev.event) {
            (
                Projector::LockerBanks,
                DomainEvent::LockerBankRegistered {
                    bank_id,
                    tenant_id,
                    serial,
                    name,
                    location,
                    compartments,
                },
            ) => {
                sqlx::query(
                    "INSERT INTO locker_banks (id, tenant_id, serial, name, location, state, online, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'registered', NULL, $6, $6)",
                )
                .bind(bank_id.to_string())
                .bind(tenant_id.to_string())
                .bind(serial)
                .bind(name)
                .bind(location.clone())
                .bind(ev.occurred_at)
                .execute(&mut *conn)
                .await?;
                for c in compartments {
                    sqlx::query(
                        "INSERT INTO compartments (id, bank_id, tenant_id, number, size, label, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(c.id.to_string())
                    .bind(bank_id.to_string())
                    .bind(tenant_id.to_string())
                    .bind(c.number)
                    .bind(&c.size)
                    .bind(c.label.clone())
                    .bind(ev.occurred_at)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            (
                Projector::LockerBanks,
                DomainEvent::DeviceStatusChanged {
                    bank_id, online, ..
                },
            ) => {
                let sql = if *online {
                    "UPDATE locker_banks SET online = 1, last_seen_at = $1, updated_at = $1 WHERE id = $2"
                } else {
                    "UPDATE locker_banks SET online = 0, updated_at = $1 WHERE id = $2"
                };
                sqlx::query(sql)
                    .bind(ev.occurred_at)
                    .bind(bank_id.to_string())
                    .execute(&mut *conn)
                    .await?;
            }
            (
                Projector::LockerBanks,
                DomainEvent::CompartmentDoorChanged {
                    compartment_id,
                    open,
                    ..
                },
            ) => {
                sqlx::query(
                    "UPDATE compartments SET door_open = $1, updated_at = $2 WHERE id = $3",
                )
                .bind(i64::from(*open))
                .bind(ev.occurred_at)
                .bind(compartment_id.to_string())
                .execute(&mut *conn)
                .await?;
            }
            (
                Projector::LockerBanks,
                DomainEvent::CompartmentOccupancyChanged {
                    compartment_id,
                    occupied,
                    ..
                },
            ) => {
                sqlx::query("UPDATE compartments SET occupied = $1, updated_at = $2 WHERE id = $3")
                    .bind(i64::from(*occupied))
                    .bind(ev.occurred_at)
                    .bind(compartment_id.to_string())
                    .execute(&mut *conn)
                    .await?;
            }
            (Projector::LockerBanks, event) if provisioning_step(event).is_some() => {
                apply_provisioning(conn, ev, event).await?
            }
            (
                Projector::Grants,
                DomainEvent::AccessGranted {
                    grant_id,
                    compartment_id,
                    tenant_id,
                    user_id,
                    valid_from,
                    valid_until,
                    ..
                },
            ) => {
                let actor = ev
                    .metadata
                    .actor
                    .user_id()
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "system".into());
                sqlx::query(
                    "INSERT INTO grants (id, compartment_id, tenant_id, user_id, valid_from, valid_until, \
                     created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(grant_id.to_string())
                .bind(compartment_id.to_string())
                .bind(tenant_id.to_string())
                .bind(user_id.to_string())
                .bind(*valid_from)
                .bind(*valid_until)
                .bind(actor)
                .bind(ev.occurred_at)
                .execute(&mut *conn)
                .await?;
            }
            (Projector::Grants, DomainEvent::AccessRevoked { grant_id, .. }) => {
                sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2")
                    .bind(ev.occurred_at)
                    .bind(grant_id.to_string())
                    .execute(&mut *conn)
                    .await?;
            }
            (Projector::OpenRequests, event) => apply_open_request(conn, ev, event).await?,
            _ => {}
        }
        Ok(())
    }
}

/// A provisioning or decommissioning event's bank, tenant, and the bank
/// state it moves to.
fn provisioning_step(event: &DomainEvent) -> Option<(Uuid, Uuid, &'static str)> {
    Some(match event {
        DomainEvent::LockerProvisioningRequested {
            bank_id, tenant_id, ..
        } => (*bank_id, *tenant_id, "provisioning"),
        DomainEvent::LockerProvisioningValidated {
            bank_id, tenant_id, ..
        } => (*bank_id, *tenant_id, "validated"),
        DomainEvent::LockerCredentialsCreated {
            bank_id, tenant_id, ..
        } => (*bank_id, *tenant_id, "credentials_created"),
        DomainEvent::LockerCredentialsDelivered {
            bank_id, tenant_id, ..
        } => (*bank_id, *tenant_id, "credentials_delivered"),
        DomainEvent::LockerWasProvisioned { bank_id, tenant_id } => {
            (*bank_id, *tenant_id, "provisioned")
        }
        DomainEvent::LockerProvisioningFailed {
            bank_id: Some(bank_id),
            tenant_id: Some(tenant_id),
            ..
        } => (*bank_id, *tenant_id, "provisioning_failed"),
        DomainEvent::LockerDecommissioned {
            bank_id, tenant_id, ..
        } => (*bank_id, *tenant_id, "decommissioned"),
        _ => return None,
    })
}

/// Moves a bank along its provisioning states. A provisioned bank is not
/// moved back by a later (refused) attempt, and a decommissioned one stays
/// decommissioned.
async fn apply_provisioning(
    conn: &mut AnyConnection,
    ev: &StoredEvent,
    event: &DomainEvent,
) -> CoreResult<()> {
    let Some((bank_id, _, state)) = provisioning_step(event) else {
        return Ok(());
    };
    let bank = bank_id.to_string();
    let at = ev.occurred_at;
    let guard = "id = $2 AND state NOT IN ('provisioned', 'decommissioned')";
    match event {
        DomainEvent::LockerProvisioningRequested {
            model, firmware, ..
        } => {
            sqlx::query(&format!(
                "UPDATE locker_banks SET state = 'provisioning', updated_at = $1, provisioning_error = NULL, \
                 model = COALESCE($3, model), firmware = COALESCE($4, firmware) WHERE {guard}"
            ))
            .bind(at)
            .bind(&bank)
            .bind(model.clone())
            .bind(firmware.clone())
            .execute(&mut *conn)
            .await?;
        }
        DomainEvent::LockerCredentialsCreated { username, .. } => {
            sqlx::query(&format!(
                "UPDATE locker_banks SET state = 'credentials_created', updated_at = $1, mqtt_username = $3 WHERE {guard}"
            ))
            .bind(at)
            .bind(&bank)
            .bind(username)
            .execute(&mut *conn)
            .await?;
        }
        DomainEvent::LockerWasProvisioned { .. } => {
            sqlx::query(&format!(
                "UPDATE locker_banks SET state = 'provisioned', updated_at = $1, provisioned_at = $1 WHERE {guard}"
            ))
            .bind(at)
            .bind(&bank)
            .execute(&mut *conn)
            .await?;
        }
        DomainEvent::LockerProvisioningFailed { reason, .. } => {
            sqlx::query(&format!(
                "UPDATE locker_banks SET state = 'provisioning_failed', updated_at = $1, provisioning_error = $3 WHERE {guard}"
            ))
            .bind(at)
            .bind(&bank)
            .bind(reason)
            .execute(&mut *conn)
            .await?;
        }
        DomainEvent::LockerDecommissioned { .. } => {
            sqlx::query(
                "UPDATE locker_banks SET state = 'decommissioned', online = 0, updated_at = $1, \
                 decommissioned_at = $1 WHERE id = $2",
            )
            .bind(at)
            .bind(&bank)
            .execute(&mut *conn)
            .await?;
        }
        _ => {
            sqlx::query(&format!(
                "UPDATE locker_banks SET state = $3, updated_at = $1 WHERE {guard}"
            ))
            .bind(at)
            .bind(&bank)
            .bind(state)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

async fn apply_open_request(
    conn: &mut AnyConnection,
    ev: &StoredEvent,
    event: &DomainEvent,
) -> CoreResult<()> {
    let at = ev.occurred_at;
    let (command_id, set, status): (Uuid, &str, Option<&str>) = match event {
        DomainEvent::CompartmentOpenRequested {
            command_id,
            compartment_id,
            bank_id,
            tenant_id,
            user_id,
            override_,
            reason,
        } => {
            let actor = ev.metadata.actor.user_id().unwrap_or(*user_id);
            sqlx::query(
                "INSERT INTO open_requests (command_id, tenant_id, compartment_id, bank_id, user_id, \
                 actor_id, override, override_reason, status, requested_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'requested', $9, $9)",
            )
            .bind(command_id.to_string())
            .bind(tenant_id.to_string())
            .bind(compartment_id.to_string())
            .bind(bank_id.to_string())
            .bind(user_id.to_string())
            .bind(actor.to_string())
            .bind(i64::from(*override_))
            .bind(reason.clone())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
        DomainEvent::CompartmentOpenAuthorized { command_id } => {
            (*command_id, "authorized_at = $1", Some("accepted"))
        }
        DomainEvent::CompartmentOpenDenied { command_id, reason } => {
            sqlx::query("UPDATE open_requests SET denial_reason = $1 WHERE command_id = $2")
                .bind(reason)
                .bind(command_id.to_string())
                .execute(&mut *conn)
                .await?;
            (*command_id, "denied_at = $1", Some("denied"))
        }
        DomainEvent::CompartmentOpenSent { command_id } => {
            (*command_id, "sent_at = $1", Some("sent"))
        }
        DomainEvent::CompartmentOpened { command_id } => {
            (*command_id, "opened_at = $1", Some("opened"))
        }
        DomainEvent::CompartmentOpenFailed {
            command_id, reason, ..
        } => {
            sqlx::query("UPDATE open_requests SET failure_reason = $1 WHERE command_id = $2")
                .bind(reason)
                .bind(command_id.to_string())
                .execute(&mut *conn)
                .await?;
            (*command_id, "failed_at = $1", Some("failed"))
        }
        DomainEvent::CompartmentOpenLateResult {
            command_id, result, ..
        } => {
            sqlx::query("UPDATE open_requests SET late_result = $1 WHERE command_id = $2")
                .bind(result)
                .bind(command_id.to_string())
                .execute(&mut *conn)
                .await?;
            (*command_id, "late_result_at = $1", None)
        }
        _ => return Ok(()),
    };
    let id = command_id.to_string();
    sqlx::query(&format!(
        "UPDATE open_requests SET {set}, updated_at = $1 WHERE command_id = $2"
    ))
    .bind(at)
    .bind(&id)
    .execute(&mut *conn)
    .await?;
    if let Some(status) = status {
        sqlx::query("UPDATE open_requests SET status = $1 WHERE command_id = $2")
            .bind(status)
            .bind(&id)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "UPDATE compartments SET latest_status = $1, latest_command_id = $2, updated_at = $3 \
             WHERE id = (SELECT compartment_id FROM open_requests WHERE command_id = $2)",
        )
        .bind(status)
        .bind(&id)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Everything a live append does after the event row: every projector and
/// the event's side effects (outbox, timers). Returns the notification the
/// event asks for; the caller appends it to the channel log last, so the
/// channel heads (hot rows on PostgreSQL) stay locked for the shortest time.
pub async fn project_live(
    conn: &mut AnyConnection,
    ev: &StoredEvent,
    mode: Mode,
) -> CoreResult<Option<Notification>> {
    for p in Projector::ALL {
        p.apply(conn, ev).await?;
    }
    let Mode::Live { open_timeout_ms } = mode else {
        return Ok(None);
    };
    if let DomainEvent::CompartmentOpenAuthorized { command_id } = &ev.event {
        outbox::enqueue(conn, ev.event_id, outbox::SEND_OPEN, ev.occurred_at).await?;
        timers::schedule(
            conn,
            timers::OPEN_TIMEOUT,
            *command_id,
            ev.occurred_at + open_timeout_ms,
        )
        .await?;
    }
    if let DomainEvent::CompartmentOpened { command_id }
    | DomainEvent::CompartmentOpenFailed { command_id, .. } = &ev.event
    {
        timers::cancel(conn, timers::OPEN_TIMEOUT, *command_id).await?;
    }
    if let DomainEvent::LockerDecommissioned { .. } = &ev.event {
        outbox::enqueue(conn, ev.event_id, outbox::DISABLE_LOCKER, ev.occurred_at).await?;
    }
    notification(conn, ev).await
}

/// The open request's requester, tenant, compartment and bank.
async fn open_parties(
    conn: &mut AnyConnection,
    command_id: Uuid,
) -> CoreResult<Option<(Uuid, Uuid, Uuid, Uuid, bool)>> {
    let row = sqlx::query(
        "SELECT user_id, tenant_id, compartment_id, bank_id, override FROM open_requests WHERE command_id = $1",
    )
    .bind(command_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let id = |c: &str| -> CoreResult<Uuid> {
        crate::accounts::parse_uuid(&row.try_get::<String, _>(c)?)
    };
    Ok(Some((
        id("user_id")?,
        id("tenant_id")?,
        id("compartment_id")?,
        id("bank_id")?,
        row.try_get::<i64, _>("override")? != 0,
    )))
}

async fn notification(
    conn: &mut AnyConnection,
    ev: &StoredEvent,
) -> CoreResult<Option<Notification>> {
    let status = |command_id: &Uuid, status: &str, reason: Option<&str>| {
        (*command_id, status.to_string(), reason.map(str::to_string))
    };
    if let Some((bank_id, tenant_id, state)) = provisioning_step(&ev.event) {
        let mut data =
            serde_json::to_value(&ev.event).map_err(|e| CoreError::Invalid(e.to_string()))?;
        if let Some(map) = data.as_object_mut() {
            map.remove("type");
            map.remove("tenant_id");
            map.insert("state".into(), json!(state));
        }
        return Ok(Some(Notification {
            channels: vec![
                Channel::TenantLockers(tenant_id),
                Channel::LockerBank(bank_id),
            ],
            event: ev.event.event_type(),
            subject: Subject {
                kind: "LockerBank".into(),
                id: bank_id,
            },
            data,
        }));
    }
    let sensors = match &ev.event {
        DomainEvent::CompartmentDoorChanged {
            bank_id,
            tenant_id,
            compartment_id,
            number,
            open,
        } => Some((
            bank_id,
            tenant_id,
            compartment_id,
            json!({"number": number, "open": open}),
        )),
        DomainEvent::CompartmentOccupancyChanged {
            bank_id,
            tenant_id,
            compartment_id,
            number,
            occupied,
        } => Some((
            bank_id,
            tenant_id,
            compartment_id,
            json!({"number": number, "occupied": occupied}),
        )),
        _ => None,
    };
    if let Some((bank_id, tenant_id, compartment_id, mut data)) = sensors {
        data["bank_id"] = json!(bank_id);
        data["compartment_id"] = json!(compartment_id);
        return Ok(Some(Notification {
            channels: vec![
                Channel::TenantLockers(*tenant_id),
                Channel::LockerBank(*bank_id),
            ],
            event: ev.event.event_type(),
            subject: Subject {
                kind: "Compartment".into(),
                id: *compartment_id,
            },
            data,
        }));
    }
    let open = match &ev.event {
        DomainEvent::LockerBankRegistered {
            bank_id,
            tenant_id,
            serial,
            name,
            compartments,
            ..
        } => {
            return Ok(Some(Notification {
                channels: vec![
                    Channel::TenantLockers(*tenant_id),
                    Channel::LockerBank(*bank_id),
                ],
                event: "LockerBankRegistered",
                subject: Subject {
                    kind: "LockerBank".into(),
                    id: *bank_id,
                },
                data: json!({"bank_id": bank_id, "serial": serial, "name": name, "state": "registered", "compartments": compartments.len()}),
            }))
        }
        DomainEvent::DeviceStatusChanged {
            bank_id,
            tenant_id,
            online,
        } => {
            return Ok(Some(Notification {
                channels: vec![
                    Channel::TenantLockers(*tenant_id),
                    Channel::LockerBank(*bank_id),
                ],
                event: "DeviceStatusChanged",
                subject: Subject {
                    kind: "LockerBank".into(),
                    id: *bank_id,
                },
                data: json!({"bank_id": bank_id, "online": online}),
            }))
        }
        DomainEvent::AccessGranted {
            grant_id,
            compartment_id,
            bank_id,
            user_id,
            valid_from,
            valid_until,
            ..
        } => {
            return Ok(Some(Notification {
                channels: vec![Channel::User(*user_id), Channel::LockerBank(*bank_id)],
                event: "AccessGranted",
                subject: Subject {
                    kind: "Compartment".into(),
                    id: *compartment_id,
                },
                data: json!({"grant_id": grant_id, "compartment_id": compartment_id, "user_id": user_id, "valid_from": valid_from, "valid_until": valid_until}),
            }))
        }
        DomainEvent::AccessRevoked {
            grant_id,
            compartment_id,
            user_id,
        } => {
            return Ok(Some(Notification {
                channels: vec![Channel::User(*user_id)],
                event: "AccessRevoked",
                subject: Subject {
                    kind: "Compartment".into(),
                    id: *compartment_id,
                },
                data: json!({"grant_id": grant_id, "compartment_id": compartment_id, "user_id": user_id}),
            }))
        }
        // Provisioning events with a bank were handled above; one without
        // a bank (an unknown serial) has nobody to tell.
        DomainEvent::CompartmentOpenRequested { .. }
        | DomainEvent::LockerProvisioningRequested { .. }
        | DomainEvent::LockerProvisioningValidated { .. }
        | DomainEvent::LockerCredentialsCreated { .. }
        | DomainEvent::LockerCredentialsDelivered { .. }
        | DomainEvent::LockerWasProvisioned { .. }
        | DomainEvent::LockerProvisioningFailed { .. }
        | DomainEvent::LockerDecommissioned { .. }
        | DomainEvent::CompartmentDoorChanged { .. }
        | DomainEvent::CompartmentOccupancyChanged { .. } => return Ok(None),
        DomainEvent::CompartmentOpenAuthorized { command_id } => {
            status(command_id, "accepted", None)
        }
        DomainEvent::CompartmentOpenDenied { command_id, reason } => {
            status(command_id, "denied", Some(reason))
        }
        DomainEvent::CompartmentOpenSent { command_id } => status(command_id, "sent", None),
        DomainEvent::CompartmentOpened { command_id } => status(command_id, "opened", None),
        DomainEvent::CompartmentOpenFailed {
            command_id, reason, ..
        } => status(command_id, "failed", Some(reason)),
        DomainEvent::CompartmentOpenLateResult {
            command_id, result, ..
        } => {
            let Some((user, tenant, compartment, bank, _)) =
                open_parties(conn, *command_id).await?
            else {
                return Ok(None);
            };
            return Ok(Some(Notification {
                channels: vec![Channel::User(user), Channel::TenantOpenRequests(tenant)],
                event: "CompartmentOpenLateResult",
                subject: Subject {
                    kind: "Compartment".into(),
                    id: compartment,
                },
                data: json!({"command_id": command_id, "compartment_id": compartment, "locker_bank_id": bank, "result": result}),
            }));
        }
    };
    let (command_id, status, reason) = open;
    let Some((user, tenant, compartment, bank, override_)) = open_parties(conn, command_id).await?
    else {
        return Ok(None);
    };
    Ok(Some(Notification {
        channels: vec![
            Channel::User(user),
            Channel::TenantOpenRequests(tenant),
            Channel::LockerBank(bank),
        ],
        event: "CompartmentOpenStatusUpdated",
        subject: Subject {
            kind: "Compartment".into(),
            id: compartment,
        },
        data: json!({"command_id": command_id, "compartment_id": compartment, "locker_bank_id": bank, "status": status, "reason": reason, "override": override_}),
    }))
}
