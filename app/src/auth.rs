//! Who is signed in, signing in and out, and the guards every other server
//! function starts with. The guards run on the server: hiding a link in the
//! UI is never what keeps a `user` out of the admin panel.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// The signed-in person, as the UI needs them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIn {
    pub id: String,
    pub email: String,
    pub name: String,
    pub is_admin: bool,
    pub tenant_id: String,
}

/// Where to go after signing in: `next` when it is a plain path on this
/// site that this user may open, else the user's home.
pub fn landing_path(next: Option<&str>, is_admin: bool) -> String {
    let home = if is_admin { "/admin" } else { "/my" };
    match next {
        Some(p)
            if is_plain_local_path(p)
                && !p.starts_with("/login")
                && (is_admin || !p.starts_with("/admin")) =>
        {
            p.to_string()
        }
        _ => home.to_string(),
    }
}

/// A path on this site and nothing else: one leading `/` (not `//`), then
/// printable ASCII only. Browsers strip tabs and newlines and read `\` as
/// `/`, so `/\tevil.example` or `/\\evil.example` would leave the site; a
/// control character would not even fit in a `Location` header.
fn is_plain_local_path(p: &str) -> bool {
    p.len() <= 2048
        && p.starts_with('/')
        && !p.starts_with("//")
        && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
}

#[server(prefix = "/sfn", endpoint = "current_user", output = crate::codec::Json)]
pub async fn current_user() -> Result<Option<SignedIn>, AppError> {
    ssr::optional_user().await
}

#[server(prefix = "/sfn", endpoint = "login", output = crate::codec::Json)]
pub async fn login(email: String, password: String, next: Option<String>) -> Result<(), AppError> {
    use lockstep_core::{identity::accounts, identity::session_auth, now_ms};

    let services = ssr::services()?;
    let session = ssr::session().await?;
    let ip = ssr::client_ip().await;
    if let Err(wait) = services.login_throttle.check(&email, ip, now_ms()) {
        tracing::warn!(reason = "throttled", ?ip, "login refused");
        return Err(ssr::refuse(
            AppError::Throttled(wait.as_secs().max(1)),
            "login_throttled",
        ));
    }
    match accounts::authenticate(&services.db, &email, &password).await? {
        Some(user) => {
            session_auth::log_in(&session, &user).await?;
            services.login_throttle.succeeded(&email, ip, now_ms());
            tracing::info!(user_id = %user.id, "login");
            let is_admin = user.role == accounts::Role::Admin;
            leptos_axum::redirect(&landing_path(next.as_deref(), is_admin));
            Ok(())
        }
        None => {
            tracing::info!(reason = "bad_credentials", ?ip, "login refused");
            Err(ssr::refuse(
                AppError::BadCredentials,
                "login_bad_credentials",
            ))
        }
    }
}

#[server(prefix = "/sfn", endpoint = "logout", output = crate::codec::Json)]
pub async fn logout() -> Result<(), AppError> {
    let session = ssr::session().await?;
    lockstep_core::identity::session_auth::log_out(&session).await?;
    leptos_axum::redirect("/login");
    Ok(())
}

#[cfg(feature = "ssr")]
pub mod ssr {
    //! Server-side helpers for server functions: reaching `Services`, the
    //! session and the client address, and the ability guard.

    use std::net::{IpAddr, SocketAddr};

    use axum::extract::ConnectInfo;
    use leptos::prelude::*;
    use lockstep_core::{
        identity::accounts::{Role, User},
        identity::caller::Caller,
        identity::principal::Principal,
        identity::session_auth,
        identity::tokens::Ability,
        Services,
    };
    use tower_sessions::Session;

    use super::SignedIn;
    use crate::error::AppError;

    pub fn services() -> Result<Services, AppError> {
        use_context::<Services>().ok_or_else(|| {
            tracing::error!("Services missing from the Leptos context");
            AppError::Internal
        })
    }

    pub async fn session() -> Result<Session, AppError> {
        leptos_axum::extract::<Session>().await.map_err(|e| {
            tracing::error!(error = %e, "no session layer on this request");
            AppError::Internal
        })
    }

    pub async fn client_ip() -> Option<IpAddr> {
        leptos_axum::extract::<ConnectInfo<SocketAddr>>()
            .await
            .ok()
            .map(|ConnectInfo(addr)| addr.ip())
    }

    /// Counts a refused request in the metrics, by reason.
    pub fn count_rejection(reason: &'static str) {
        if let Some(counter) = use_context::<RejectionCounter>() {
            (counter.0)(reason);
        }
    }

    /// How the server lets the UI count rejections without the UI knowing
    /// the metrics library.
    #[derive(Clone)]
    pub struct RejectionCounter(pub std::sync::Arc<dyn Fn(&'static str) + Send + Sync>);

    pub fn to_current(user: &User) -> SignedIn {
        SignedIn {
            id: user.id.to_string(),
            email: user.email.clone(),
            name: user.name.clone(),
            is_admin: user.role == Role::Admin,
            tenant_id: user.tenant_id.to_string(),
        }
    }

    /// The signed-in user; a page load (GET) also renews the session.
    pub async fn session_user() -> Result<Option<User>, AppError> {
        let services = services()?;
        let session = session().await?;
        let safe = use_context::<axum::http::request::Parts>().is_some_and(|p| {
            matches!(p.method, axum::http::Method::GET | axum::http::Method::HEAD)
        });
        Ok(session_auth::session_user_renewing(&services.db, &session, safe).await?)
    }

    pub async fn optional_user() -> Result<Option<SignedIn>, AppError> {
        Ok(session_user().await?.as_ref().map(to_current))
    }

    /// Sets the HTTP status of the response being rendered (a page during
    /// SSR, or a server function's own response).
    pub fn set_status(status: u16) {
        if let (Some(opts), Ok(code)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            axum::http::StatusCode::from_u16(status),
        ) {
            opts.set_status(code);
        }
    }

    /// Answers with `err`'s status and counts the refusal under `reason`.
    pub fn refuse(err: AppError, reason: &'static str) -> AppError {
        set_status(err.status());
        count_rejection(reason);
        err
    }

    pub async fn require_user() -> Result<User, AppError> {
        session_user()
            .await?
            .ok_or_else(|| refuse(AppError::Unauthenticated, "unauthenticated"))
    }

    /// The core's caller for `principal`, carrying the request's
    /// `X-Socket-ID` and `X-Tab-ID` (that socket, and that tab when it
    /// polls, are spared the broadcasts this call causes); a malformed one
    /// is refused.
    pub fn caller(principal: &Principal) -> Result<Caller, AppError> {
        let parts = use_context::<axum::http::request::Parts>();
        let header = parts
            .as_ref()
            .and_then(|p| p.headers.get("x-socket-id").cloned());
        let tab_id = match parts
            .as_ref()
            .and_then(|p| p.headers.get(lockstep_wire::channel::TAB_ID_HEADER))
        {
            None => None,
            Some(v) => match v.to_str() {
                Ok(id) if lockstep_wire::channel::valid_tab_id(id) => Some(id.to_string()),
                _ => {
                    return Err(refuse(
                        AppError::Invalid(
                            "X-Tab-ID must be 8 to 64 letters, digits, - or _".into(),
                        ),
                        "bad_tab_id",
                    ))
                }
            },
        };
        let socket_id = match header {
            None => None,
            Some(v) => match v.to_str() {
                Ok(id) if lockstep_wire::channel::valid_socket_id(id) => Some(id.to_string()),
                _ => {
                    return Err(refuse(
                        AppError::Invalid("X-Socket-ID must be a socket id like 123.456".into()),
                        "bad_socket_id",
                    ))
                }
            },
        };
        Ok(principal
            .caller()
            .with_socket_id(socket_id)
            .with_tab_id(tab_id))
    }

    /// The signed-in caller, when they may `ability`: the same check (the
    /// core's `Principal`) the JSON API makes, so a rule holds for both.
    pub async fn require(ability: Ability) -> Result<Principal, AppError> {
        let principal = Principal::Session(require_user().await?);
        match principal.require(ability) {
            Ok(_) => Ok(principal),
            Err(_) => Err(refuse(AppError::Forbidden, "missing_ability")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::landing_path;

    #[test]
    fn landing_path_only_follows_safe_local_paths() {
        assert_eq!(landing_path(None, true), "/admin");
        assert_eq!(landing_path(None, false), "/my");
        assert_eq!(landing_path(Some("/my?x=1"), false), "/my?x=1");
        assert_eq!(landing_path(Some("//evil.example"), false), "/my");
        assert_eq!(landing_path(Some("https://evil.example"), true), "/admin");
        assert_eq!(landing_path(Some("/admin"), false), "/my");
        assert_eq!(landing_path(Some("/admin"), true), "/admin");
        assert_eq!(landing_path(Some("/login"), true), "/admin");
        // Browsers strip tabs and newlines: these would leave the site.
        assert_eq!(landing_path(Some("/\t/evil.example"), true), "/admin");
        assert_eq!(landing_path(Some("/\n/evil.example"), false), "/my");
        assert_eq!(landing_path(Some("/\\evil.example"), false), "/my");
        // A control character would panic building the Location header.
        assert_eq!(landing_path(Some("/\u{7f}"), false), "/my");
        assert_eq!(landing_path(Some("/my\r\nSet-Cookie: x=1"), false), "/my");
        assert_eq!(landing_path(Some("/caf\u{e9}"), false), "/my");
        assert_eq!(
            landing_path(Some(&format!("/{}", "a".repeat(3000))), false),
            "/my"
        );
    }
}
