//! The `accounts` projector: applies account edits (`UserProfileChanged`)
//! to `users`. Accounts are created outside the stream, so a replay does
//! not empty `users`: it applies the edits again, in order, which ends in
//! the same state.

use sqlx::AnyConnection;

use crate::{
    error::CoreResult,
    eventstore::events::{DomainEvent, StoredEvent},
};

pub async fn apply(conn: &mut AnyConnection, ev: &StoredEvent) -> CoreResult<()> {
    let DomainEvent::UserProfileChanged {
        user_id,
        version,
        name,
        role,
        disabled,
        changed,
        ..
    } = &ev.event
    else {
        return Ok(());
    };
    // `disabled_at` moves only when the flag itself changed: it says since
    // when, not when the account was last edited.
    let flag_changed = changed.iter().any(|f| f == "disabled");
    let sql = if flag_changed {
        "UPDATE users SET name = $1, role = $2, version = $3, edited_at = $4, edited_by = $5, \
         disabled_at = $6 WHERE id = $7"
    } else {
        "UPDATE users SET name = $1, role = $2, version = $3, edited_at = $4, edited_by = $5 \
         WHERE id = $6"
    };
    let mut query = sqlx::query(sql)
        .bind(name)
        .bind(role)
        .bind(*version)
        .bind(ev.occurred_at)
        .bind(ev.metadata.actor.user_id().map(|u| u.to_string()));
    if flag_changed {
        query = query.bind(disabled.then_some(ev.occurred_at));
    }
    query.bind(user_id.to_string()).execute(&mut *conn).await?;
    Ok(())
}
