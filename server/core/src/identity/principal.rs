//! Who is asking, as every adapter sees it: a browser session or an API
//! token, with the one ability check both go through. A request may do
//! what the caller's role allows and, with a token, what the token's
//! abilities allow too; the JSON API and the server functions ask the same
//! question here, so a rule changed in one place holds for both.

use uuid::Uuid;

use crate::{
    error::{CoreError, CoreResult},
    eventstore::events::Actor,
    identity::{
        accounts::User,
        caller::Caller,
        tokens::{Abilities, Ability},
    },
};

#[derive(Clone, Debug)]
pub enum Principal {
    /// Signed in through the browser: the role's abilities.
    Session(User),
    /// An API token: the token's abilities within the role's.
    Token {
        token_id: Uuid,
        user: User,
        abilities: Abilities,
    },
}

impl Principal {
    pub fn user(&self) -> &User {
        match self {
            Principal::Session(user) | Principal::Token { user, .. } => user,
        }
    }

    /// The caller of a domain command, with a fresh correlation id.
    pub fn caller(&self) -> Caller {
        let actor = match self {
            Principal::Session(user) => Actor::User { id: user.id },
            Principal::Token { token_id, user, .. } => Actor::Token {
                id: *token_id,
                user_id: user.id,
            },
        };
        Caller::new(self.user().clone(), actor)
    }

    /// Whether both the role and (for tokens) the token allow `ability`.
    pub fn may(&self, ability: Ability) -> bool {
        let by_token = match self {
            Principal::Session(_) => true,
            Principal::Token { abilities, .. } => abilities.contains(ability),
        };
        by_token && ability.allowed_for(self.user().role)
    }

    /// The user, when [`Principal::may`] `ability`; `Forbidden` naming the
    /// ability otherwise.
    pub fn require(&self, ability: Ability) -> CoreResult<&User> {
        if self.may(ability) {
            Ok(self.user())
        } else {
            tracing::info!(user_id = %self.user().id, ability = %ability, "ability refused");
            Err(CoreError::Forbidden(format!(
                "this action needs the ability {ability}"
            )))
        }
    }
}
