//! Login throttling: a GCRA rate limit (the `governor` crate) per account
//! and another per client address. Both are checked before the password is,
//! so guessing is slowed whichever of the two an attacker varies.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota, RateLimiter,
};

/// Attempts allowed per account and per address, and how fast they refill.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleConfig {
    pub per_account_burst: u32,
    pub per_ip_burst: u32,
    /// One attempt is given back every `refill`.
    pub refill: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            per_account_burst: 5,
            per_ip_burst: 20,
            refill: Duration::from_secs(12),
        }
    }
}

#[derive(Clone)]
pub struct LoginThrottle {
    per_account: Arc<DefaultKeyedRateLimiter<String>>,
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginThrottle")
    }
}

fn quota(burst: u32, refill: Duration) -> Quota {
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(refill.max(Duration::from_millis(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            per_account: Arc::new(RateLimiter::keyed(quota(
                config.per_account_burst,
                config.refill,
            ))),
            per_ip: Arc::new(RateLimiter::keyed(quota(
                config.per_ip_burst,
                config.refill,
            ))),
        }
    }

    /// Counts one attempt; `Err(wait)` when either limit is exhausted.
    pub fn check(&self, email: &str, ip: Option<IpAddr>) -> Result<(), Duration> {
        let clock = DefaultClock::default();
        if let Some(ip) = ip {
            if let Err(not_until) = self.per_ip.check_key(&ip) {
                return Err(not_until.wait_time_from(clock.now()));
            }
        }
        let key = email.trim().to_lowercase();
        self.per_account
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_limit_applies_across_addresses() {
        let t = LoginThrottle::new(ThrottleConfig {
            per_account_burst: 2,
            per_ip_burst: 100,
            refill: Duration::from_secs(60),
        });
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!(t.check("x@y.z", Some(a)).is_ok());
        assert!(t.check("X@y.z", Some(b)).is_ok());
        let wait = t
            .check("x@y.z", Some(a))
            .expect_err("third attempt throttled");
        assert!(wait > Duration::from_secs(1));
        assert!(t.check("other@y.z", Some(a)).is_ok());
    }

    #[test]
    fn ip_limit_applies_across_accounts() {
        let t = LoginThrottle::new(ThrottleConfig {
            per_account_burst: 100,
            per_ip_burst: 2,
            refill: Duration::from_secs(60),
        });
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        assert!(t.check("a@y.z", Some(a)).is_ok());
        assert!(t.check("b@y.z", Some(a)).is_ok());
        assert!(t.check("c@y.z", Some(a)).is_err());
        assert!(t
            .check("c@y.z", Some("10.0.0.9".parse().expect("ip")))
            .is_ok());
    }
}
