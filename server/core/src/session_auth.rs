//! Which user a cookie session belongs to, and logging in and out of one.
//! The session's id is rotated on login (against session fixation) and the
//! record is deleted on logout.

use tower_sessions::Session;
use uuid::Uuid;

use crate::{
    accounts::{find_user, User},
    db::Db,
    error::{CoreError, CoreResult},
};

const USER_ID_KEY: &str = "user_id";

fn session_error(e: tower_sessions::session::Error) -> CoreError {
    CoreError::Invalid(format!("session store: {e}"))
}

/// The user this session is logged in as, if any (and if they still exist).
pub async fn session_user(db: &Db, session: &Session) -> CoreResult<Option<User>> {
    let id: Option<String> = session.get(USER_ID_KEY).await.map_err(session_error)?;
    let Some(id) = id.and_then(|s| Uuid::parse_str(&s).ok()) else {
        return Ok(None);
    };
    find_user(db, id).await
}

pub async fn log_in(session: &Session, user: &User) -> CoreResult<()> {
    session.cycle_id().await.map_err(session_error)?;
    session
        .insert(USER_ID_KEY, user.id.to_string())
        .await
        .map_err(session_error)
}

pub async fn log_out(session: &Session) -> CoreResult<()> {
    session.flush().await.map_err(session_error)
}
