//! The channel-log notification each event asks for: which channels, the
//! envelope's event name, subject and body (wire names from
//! lockstep-wire). Appended by the store after the projectors ran.

use lockstep_wire::{
    envelope::{names, OpenStatusUpdated},
    mqtt::{truncate_chars, MAX_ERROR_CHARS},
    record::{Editor, RecordUpdated, RecordsImported},
    OpenStatus, RecordType,
};
use serde_json::json;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{
    locker_banks::provisioning_step,
    open_requests::{OpenParties, PARTIES},
};
use crate::{
    error::{CoreError, CoreResult},
    eventstore::{
        channels::{Channel, Notification, Subject},
        events::{DomainEvent, StoredEvent},
    },
};

/// Record type, id, version, changed fields, the channels besides the
/// record's own.
type RecordEdit<'a> = (RecordType, Uuid, i64, &'a [String], Vec<Channel>);

/// What an edit event says of its record: type, id, version after it,
/// the fields it changed, and the channels that hear of it (the record's
/// own, its tenant's list channel for the type, and where else it shows:
/// a compartment's or grant's bank page, a grantee's own list).
fn record_edit(event: &DomainEvent) -> Option<RecordEdit<'_>> {
    Some(match event {
        DomainEvent::LockerBankDetailsChanged {
            bank_id,
            tenant_id,
            version,
            changed,
            ..
        } => (
            RecordType::LockerBank,
            *bank_id,
            *version,
            changed,
            vec![Channel::TenantLockers(*tenant_id)],
        ),
        DomainEvent::CompartmentDetailsChanged {
            compartment_id,
            bank_id,
            tenant_id,
            version,
            changed,
            ..
        } => (
            RecordType::Compartment,
            *compartment_id,
            *version,
            changed,
            vec![
                Channel::TenantLockers(*tenant_id),
                Channel::LockerBank(*bank_id),
            ],
        ),
        DomainEvent::AccessWindowChanged {
            grant_id,
            bank_id,
            tenant_id,
            user_id,
            version,
            changed,
            ..
        } => (
            RecordType::Grant,
            *grant_id,
            *version,
            changed,
            vec![
                Channel::TenantLockers(*tenant_id),
                Channel::LockerBank(*bank_id),
                Channel::User(*user_id),
            ],
        ),
        DomainEvent::UserProfileChanged {
            user_id,
            tenant_id,
            version,
            changed,
            ..
        } => (
            RecordType::User,
            *user_id,
            *version,
            changed,
            vec![Channel::TenantUsers(*tenant_id)],
        ),
        _ => return None,
    })
}

/// `RecordUpdated` for an edit event: the editor named (their current
/// display name), the fields listed, never their values.
async fn record_updated(conn: &mut AnyConnection, ev: &StoredEvent) -> CoreResult<Notification> {
    let (record_type, record_id, version, fields, also) = record_edit(&ev.event)
        .ok_or_else(|| CoreError::Invalid(format!("{} is not an edit", ev.event.event_type())))?;
    let updated_by = match ev.metadata.actor.user_id() {
        Some(id) => sqlx::query("SELECT name FROM users WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?
            .map(|row| row.try_get::<String, _>("name"))
            .transpose()?
            .map(|name| Editor { id, name }),
        None => None,
    };
    let body = RecordUpdated {
        record_type,
        record_id,
        version,
        updated_at: ev.occurred_at,
        updated_by,
        fields: fields.to_vec(),
    };
    let mut channels = vec![Channel::Record(record_type, record_id)];
    channels.extend(also);
    Ok(Notification {
        channels,
        event: names::RECORD_UPDATED,
        subject: Subject {
            kind: record_type.as_str().into(),
            id: record_id,
        },
        data: serde_json::to_value(body).map_err(|e| CoreError::Invalid(e.to_string()))?,
    })
}

/// The open request's requester, tenant, compartment and bank: `known`
/// when the projector just returned them, else read.
async fn open_parties(
    conn: &mut AnyConnection,
    command_id: Uuid,
    known: Option<OpenParties>,
) -> CoreResult<Option<OpenParties>> {
    if known.is_some() {
        return Ok(known);
    }
    let row = sqlx::query(&format!(
        "SELECT {PARTIES} FROM open_requests WHERE command_id = $1"
    ))
    .bind(command_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(OpenParties::from_row).transpose()
}

/// The notification `ev` asks for; `parties`: the open command's, when
/// the projector already has them.
pub async fn notification(
    conn: &mut AnyConnection,
    ev: &StoredEvent,
    parties: Option<OpenParties>,
) -> CoreResult<Option<Notification>> {
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
    let mut detail_of_failure = None;
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
                event: names::LOCKER_BANK_REGISTERED,
                subject: Subject {
                    kind: "LockerBank".into(),
                    id: *bank_id,
                },
                data: json!({"bank_id": bank_id, "serial": serial, "name": name, "state": "registered", "compartments": compartments.len()}),
            }))
        }
        DomainEvent::LockerBankDetailsChanged { .. }
        | DomainEvent::CompartmentDetailsChanged { .. }
        | DomainEvent::AccessWindowChanged { .. }
        | DomainEvent::UserProfileChanged { .. } => {
            return record_updated(conn, ev).await.map(Some)
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
                event: names::DEVICE_STATUS_CHANGED,
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
            tenant_id,
            user_id,
            valid_from,
            valid_until,
        } => {
            return Ok(Some(Notification {
                channels: vec![
                    Channel::User(*user_id),
                    Channel::LockerBank(*bank_id),
                    Channel::TenantLockers(*tenant_id),
                ],
                event: names::ACCESS_GRANTED,
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
            // The event names no bank (it predates the bank channel's
            // readers): the compartment's row does.
            let row = sqlx::query("SELECT bank_id, tenant_id FROM compartments WHERE id = $1")
                .bind(compartment_id.to_string())
                .fetch_optional(&mut *conn)
                .await?;
            let mut channels = vec![Channel::User(*user_id)];
            if let Some(r) = row {
                use crate::identity::accounts::parse_uuid;
                channels.push(Channel::LockerBank(parse_uuid(
                    &r.try_get::<String, _>("bank_id")?,
                )?));
                channels.push(Channel::TenantLockers(parse_uuid(
                    &r.try_get::<String, _>("tenant_id")?,
                )?));
            }
            return Ok(Some(Notification {
                channels,
                event: names::ACCESS_REVOKED,
                subject: Subject {
                    kind: "Compartment".into(),
                    id: *compartment_id,
                },
                data: json!({"grant_id": grant_id, "compartment_id": compartment_id, "user_id": user_id}),
            }));
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
        | DomainEvent::LockerProvisioningReset { .. }
        | DomainEvent::CompartmentDoorChanged { .. }
        | DomainEvent::CompartmentOccupancyChanged { .. } => return Ok(None),
        // Only imports add compartments, quietly: their summary below
        // speaks for them.
        DomainEvent::CompartmentAdded { .. } => return Ok(None),
        DomainEvent::CompartmentsImported {
            bank_id,
            tenant_id,
            added,
            updated,
            unchanged,
        } => {
            let body = RecordsImported {
                record_type: RecordType::Compartment,
                bank_id: *bank_id,
                added: *added,
                updated: *updated,
                unchanged: *unchanged,
            };
            return Ok(Some(Notification {
                channels: vec![
                    Channel::TenantLockers(*tenant_id),
                    Channel::LockerBank(*bank_id),
                ],
                event: names::RECORDS_IMPORTED,
                subject: Subject {
                    kind: "LockerBank".into(),
                    id: *bank_id,
                },
                data: serde_json::to_value(body).map_err(|e| CoreError::Invalid(e.to_string()))?,
            }));
        }
        DomainEvent::CompartmentOpenAuthorized { command_id } => {
            (*command_id, OpenStatus::Accepted, None)
        }
        DomainEvent::CompartmentOpenDenied { command_id, reason } => {
            (*command_id, OpenStatus::Denied, Some((*reason).into()))
        }
        DomainEvent::CompartmentOpenSent { command_id } => (*command_id, OpenStatus::Sent, None),
        DomainEvent::CompartmentOpened { command_id } => (*command_id, OpenStatus::Opened, None),
        DomainEvent::CompartmentOpenFailed {
            command_id,
            reason,
            detail,
        } => {
            detail_of_failure = detail.clone().map(|d| truncate_chars(d, MAX_ERROR_CHARS));
            (*command_id, OpenStatus::Failed, Some((*reason).into()))
        }
        DomainEvent::CompartmentOpenLateResult {
            command_id, result, ..
        } => {
            let Some(OpenParties {
                user,
                tenant,
                compartment,
                bank,
                ..
            }) = open_parties(conn, *command_id, parties).await?
            else {
                return Ok(None);
            };
            return Ok(Some(Notification {
                channels: vec![
                    Channel::User(user),
                    Channel::TenantOpenRequests(tenant),
                    Channel::LockerBank(bank),
                ],
                event: names::OPEN_LATE_RESULT,
                subject: Subject {
                    kind: "Compartment".into(),
                    id: compartment,
                },
                data: json!({"command_id": command_id, "compartment_id": compartment, "locker_bank_id": bank, "result": result}),
            }));
        }
    };
    let (command_id, status, reason) = open;
    let Some(OpenParties {
        user,
        tenant,
        compartment,
        bank,
        override_,
    }) = open_parties(conn, command_id, parties).await?
    else {
        return Ok(None);
    };
    Ok(Some(Notification {
        channels: vec![
            Channel::User(user),
            Channel::TenantOpenRequests(tenant),
            Channel::LockerBank(bank),
        ],
        event: names::OPEN_STATUS_UPDATED,
        subject: Subject {
            kind: "Compartment".into(),
            id: compartment,
        },
        data: serde_json::to_value(OpenStatusUpdated {
            command_id,
            compartment_id: compartment,
            locker_bank_id: bank,
            status,
            reason,
            detail: detail_of_failure,
            override_,
        })
        .map_err(|e| CoreError::Invalid(format!("status body does not serialize: {e}")))?,
    }))
}
