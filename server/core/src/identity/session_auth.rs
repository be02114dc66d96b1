//! Which user a cookie session belongs to, and logging in and out of one.
//! The session's id is rotated on login (against session fixation) and the
//! record is deleted on logout.
//!
//! Expiry is rolling: a session ends after `LOCKSTEP_SESSION_HOURS` without
//! use. Every authenticated GET or HEAD (a page, an API read) that finds
//! the session's last renewal older than [`RENEW_AFTER_MS`] marks it
//! renewed, which saves it with a fresh expiry and sends the cookie again;
//! requests in between, and state-changing ones, write nothing.

use tower_sessions::Session;
use uuid::Uuid;

use crate::{
    db::Db,
    error::{CoreError, CoreResult},
    identity::accounts::{find_user, User},
    now_ms,
};

const USER_ID_KEY: &str = "user_id";
const RENEWED_KEY: &str = "renewed_at";
/// How often an active session's expiry is pushed forward.
pub const RENEW_AFTER_MS: i64 = 60_000;

fn session_error(e: tower_sessions::session::Error) -> CoreError {
    CoreError::Invalid(format!("session store: {e}"))
}

/// The user this session is logged in as, if any (and if they still exist),
/// renewing the session's expiry when `renew` (safe requests only: a
/// renewal is a write after the response is ready, and a write that fails
/// there must not turn a committed command into an error).
pub async fn session_user_renewing(
    db: &Db,
    session: &Session,
    renew_it: bool,
) -> CoreResult<Option<User>> {
    let user = session_user(db, session).await?;
    if user.is_some() && renew_it {
        renew(session, now_ms()).await?;
    }
    Ok(user)
}

/// The user this session is logged in as, if any (and if they still exist).
pub async fn session_user(db: &Db, session: &Session) -> CoreResult<Option<User>> {
    let id: Option<String> = session.get(USER_ID_KEY).await.map_err(session_error)?;
    let Some(id) = id.and_then(|s| Uuid::parse_str(&s).ok()) else {
        return Ok(None);
    };
    find_user(db, id).await
}

/// Pushes the session's expiry forward if it was last renewed more than
/// [`RENEW_AFTER_MS`] before `now` (the session layer saves it, with the
/// expiry counted from now, once the response is ready).
pub async fn renew(session: &Session, now: i64) -> CoreResult<bool> {
    let renewed: Option<i64> = session.get(RENEWED_KEY).await.map_err(session_error)?;
    if renewed.is_some_and(|at| now - at < RENEW_AFTER_MS) {
        return Ok(false);
    }
    session
        .insert(RENEWED_KEY, now)
        .await
        .map_err(session_error)?;
    Ok(true)
}

pub async fn log_in(session: &Session, user: &User) -> CoreResult<()> {
    session.cycle_id().await.map_err(session_error)?;
    session
        .insert(USER_ID_KEY, user.id.to_string())
        .await
        .map_err(session_error)?;
    session
        .insert(RENEWED_KEY, now_ms())
        .await
        .map_err(session_error)
}

pub async fn log_out(session: &Session) -> CoreResult<()> {
    session.flush().await.map_err(session_error)
}
