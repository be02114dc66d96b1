//! The first start: when the database has no admin yet, create one (in the
//! tenant "Default") from the configured email and password, or with a
//! generated password printed once.

use lockstep_core::{
    db::Db,
    identity::accounts::{self, NewUser, Role},
    identity::password::generate_password,
    CoreError,
};

/// What `ensure_admin` did.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminBootstrap {
    AlreadyPresent,
    Created {
        email: String,
        generated_password: Option<String>,
    },
}

pub async fn ensure_admin(
    db: &Db,
    email: &str,
    password: Option<&str>,
) -> Result<AdminBootstrap, CoreError> {
    if accounts::count_admins(db).await? > 0 {
        return Ok(AdminBootstrap::AlreadyPresent);
    }
    let generated = password.is_none().then(generate_password);
    let password = password
        .map(str::to_string)
        .or_else(|| generated.clone())
        .unwrap_or_default();
    let user = accounts::add_user(
        db,
        NewUser {
            email: email.to_string(),
            name: Some("Administrator".into()),
            role: Role::Admin,
            tenant_name: "Default".into(),
            password,
        },
    )
    .await?;
    Ok(AdminBootstrap::Created {
        email: user.email,
        generated_password: generated,
    })
}
