//! Sign-in throttling, built so that nobody can lock anyone else out.
//! Three GCRA rate limits (the `governor` crate), all checked before the
//! password is:
//!
//! - per client address: a guesser is slowed whatever accounts it tries;
//! - per account *and* address: a stranger's wrong passwords exhaust only
//!   their own address's attempts at that account, never the owner's;
//! - per account, across addresses, ten times looser (ten times the burst,
//!   refilled ten times as fast): the ceiling for guessing from many
//!   addresses at once. When it is exhausted, only known-good clients (an
//!   address this account signed in from before, remembered for
//!   [`KNOWN_FOR`]) still reach the password check.
//!
//! A known-good client is subject to its address's limit only, so the
//! right password from where the owner usually signs in always gets
//! through, whatever strangers elsewhere do. (Someone sharing the owner's
//! address, behind the same NAT, shares its address limit too.) An
//! address is an IPv4 address or an IPv6 /64, the block one host usually
//! holds. Keys hold a hash of the submitted email (16 bytes), never the
//! email, and [`LoginThrottle::prune`] (run by the maintenance worker)
//! drops keys that have fully refilled and clients not seen for
//! [`KNOWN_FOR`].

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota, RateLimiter,
};
use sha2::{Digest, Sha256};

/// Attempts allowed per account and per address, and how fast they refill.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleConfig {
    /// Per account from one address (and a tenth of the per-account
    /// ceiling across addresses).
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

/// How long an address stays known-good after a successful sign-in.
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// Known-good clients remembered at most (the oldest are dropped first).
const KNOWN_MAX: usize = 100_000;

/// An account as the throttle knows it: a hash of the normalised email.
type AccountKey = [u8; 16];

/// The address a limit is kept for: IPv4 as is (also when mapped into
/// IPv6), IPv6 by its /64.
fn client_block(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    }
}

fn account_key(email: &str) -> AccountKey {
    let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[derive(Clone)]
pub struct LoginThrottle {
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    per_pair: Arc<DefaultKeyedRateLimiter<(AccountKey, IpAddr)>>,
    per_account: Arc<DefaultKeyedRateLimiter<AccountKey>>,
    /// (account, address) → when it last signed in (ms).
    known: Arc<Mutex<HashMap<(AccountKey, IpAddr), i64>>>,
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
            per_ip: Arc::new(RateLimiter::keyed(quota(
                config.per_ip_burst,
                config.refill,
            ))),
            per_pair: Arc::new(RateLimiter::keyed(quota(
                config.per_account_burst,
                config.refill,
            ))),
            per_account: Arc::new(RateLimiter::keyed(quota(
                config.per_account_burst.saturating_mul(10),
                config.refill / 10,
            ))),
            known: Arc::default(),
        }
    }

    fn is_known(&self, account: AccountKey, ip: IpAddr, now: i64) -> bool {
        self.known
            .lock()
            .ok()
            .and_then(|k| k.get(&(account, ip)).copied())
            .is_some_and(|at| now - at < KNOWN_FOR.as_millis() as i64)
    }

    /// Counts one attempt at `email` from `ip`; `Err(wait)` when it must
    /// not reach the password check.
    pub fn check(&self, email: &str, ip: Option<IpAddr>, now: i64) -> Result<(), Duration> {
        let ip = ip.map(client_block);
        let clock = DefaultClock::default();
        let wait = |n: governor::NotUntil<_>| n.wait_time_from(clock.now());
        let account = account_key(email);
        let Some(ip) = ip else {
            // No address (never the case behind the HTTP server): the
            // account's ceiling is all there is.
            return self.per_account.check_key(&account).map_err(wait);
        };
        self.per_ip.check_key(&ip).map_err(wait)?;
        if self.is_known(account, ip, now) {
            return Ok(());
        }
        self.per_pair.check_key(&(account, ip)).map_err(wait)?;
        self.per_account.check_key(&account).map_err(wait)
    }

    /// The right password from `ip`: it is known-good for this account.
    pub fn succeeded(&self, email: &str, ip: Option<IpAddr>, now: i64) {
        let Some(ip) = ip.map(client_block) else {
            return;
        };
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= KNOWN_MAX {
                prune_known(&mut known, now, KNOWN_MAX / 2);
            }
            known.insert((account_key(email), ip), now);
        }
    }

    /// Forgets what no longer limits anyone: rate-limit keys that have
    /// refilled, known-good clients older than [`KNOWN_FOR`]. Returns how
    /// many keys are left.
    pub fn prune(&self, now: i64) -> usize {
        self.per_ip.retain_recent();
        self.per_pair.retain_recent();
        self.per_account.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_pair.shrink_to_fit();
        self.per_account.shrink_to_fit();
        let known = match self.known.lock() {
            Ok(mut known) => {
                prune_known(&mut known, now, KNOWN_MAX);
                known.len()
            }
            Err(_) => 0,
        };
        self.per_ip.len() + self.per_pair.len() + self.per_account.len() + known
    }
}

/// Drops entries older than [`KNOWN_FOR`], then the oldest until at most
/// `keep` are left.
fn prune_known(known: &mut HashMap<(AccountKey, IpAddr), i64>, now: i64, keep: usize) {
    let horizon = now - KNOWN_FOR.as_millis() as i64;
    known.retain(|_, at| *at > horizon);
    if known.len() > keep {
        let mut ages: Vec<i64> = known.values().copied().collect();
        ages.sort_unstable();
        let cutoff = ages[known.len() - keep];
        known.retain(|_, at| *at >= cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    const NOW: i64 = 1_000_000_000;

    fn throttle(per_account: u32, per_ip: u32) -> LoginThrottle {
        LoginThrottle::new(ThrottleConfig {
            per_account_burst: per_account,
            per_ip_burst: per_ip,
            refill: Duration::from_secs(60),
        })
    }

    #[test]
    fn a_strangers_failures_never_lock_the_owner_out() {
        let t = throttle(2, 100);
        // The stranger exhausts their own attempts at the admin's account…
        assert!(t.check("admin@y.z", ip("10.0.0.66"), NOW).is_ok());
        assert!(t.check("ADMIN@y.z ", ip("10.0.0.66"), NOW).is_ok());
        let wait = t
            .check("admin@y.z", ip("10.0.0.66"), NOW)
            .expect_err("third attempt from the stranger throttled");
        assert!(wait > Duration::from_secs(1));
        // …and the owner, from elsewhere, is not held up by it.
        assert!(t.check("admin@y.z", ip("10.0.0.1"), NOW).is_ok());
    }

    #[test]
    fn many_addresses_hit_the_accounts_ceiling_but_not_a_known_client() {
        let t = throttle(1, 100);
        t.succeeded("admin@y.z", ip("10.0.0.1"), NOW);
        // Ten addresses, one attempt each: the account's ceiling (10).
        for n in 0..10 {
            assert!(t
                .check("admin@y.z", ip(&format!("10.1.0.{n}")), NOW)
                .is_ok());
        }
        assert!(t.check("admin@y.z", ip("10.1.0.99"), NOW).is_err());
        // The owner's usual address still gets to the password check, again
        // and again (its address limit only).
        for _ in 0..5 {
            assert!(t.check("admin@y.z", ip("10.0.0.1"), NOW).is_ok());
        }
        // A known client stops being known after KNOWN_FOR.
        let later = NOW + KNOWN_FOR.as_millis() as i64 + 1;
        assert!(t.check("admin@y.z", ip("10.0.0.1"), later).is_err());
    }

    #[test]
    fn an_ipv6_host_is_its_64_and_a_mapped_ipv4_its_address() {
        let t = throttle(100, 2);
        assert!(t.check("a@y.z", ip("2001:db8::1"), NOW).is_ok());
        assert!(t.check("a@y.z", ip("2001:db8::ffff:2"), NOW).is_ok());
        assert!(
            t.check("a@y.z", ip("2001:db8::3"), NOW).is_err(),
            "one /64, one address limit"
        );
        assert!(t.check("a@y.z", ip("2001:db8:0:1::1"), NOW).is_ok());
        assert!(t.check("a@y.z", ip("10.9.9.9"), NOW).is_ok());
        assert!(t.check("a@y.z", ip("::ffff:10.9.9.9"), NOW).is_ok());
        assert!(t.check("a@y.z", ip("10.9.9.9"), NOW).is_err());
    }

    #[test]
    fn ip_limit_applies_across_accounts() {
        let t = throttle(100, 2);
        assert!(t.check("a@y.z", ip("10.0.0.1"), NOW).is_ok());
        assert!(t.check("b@y.z", ip("10.0.0.1"), NOW).is_ok());
        assert!(t.check("c@y.z", ip("10.0.0.1"), NOW).is_err());
        assert!(t.check("c@y.z", ip("10.0.0.9"), NOW).is_ok());
    }

    #[test]
    fn keys_are_pruned_and_hold_no_email() {
        let t = LoginThrottle::new(ThrottleConfig {
            per_account_burst: 5,
            per_ip_burst: 20,
            refill: Duration::from_millis(1),
        });
        for n in 0..50 {
            let _ = t.check(&format!("user{n}@example.com"), ip("10.0.0.1"), NOW);
        }
        t.succeeded("user1@example.com", ip("10.0.0.1"), NOW);
        // governor's buckets run on the real clock: 50 ms refills all of
        // them (20 attempts x 1 ms at most); only the known client is left.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(t.prune(NOW), 1);
        assert_eq!(t.prune(NOW + KNOWN_FOR.as_millis() as i64 + 1), 0);
        assert_eq!(account_key("A@b.c "), account_key("a@b.c"));
    }
}
