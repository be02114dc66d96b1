//! `Services`: the one handle the adapters (HTTP routes, server functions,
//! CLI) hold to reach the core. Cheap to clone.

use crate::{
    db::Db,
    throttle::{LoginThrottle, ThrottleConfig},
};

#[derive(Clone, Debug)]
pub struct Services {
    pub db: Db,
    pub login_throttle: LoginThrottle,
}

impl Services {
    pub fn new(db: Db, throttle: ThrottleConfig) -> Self {
        Self {
            db,
            login_throttle: LoginThrottle::new(throttle),
        }
    }
}
