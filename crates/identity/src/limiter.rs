//! Rate limiting of failed authentication (SPEC §2.5), per source address and per (source
//! address, claimed identity) — never by identity alone, so failures from one address never
//! lock a device, an application or the admin out of another.
//!
//! Each key has a GCRA bucket (one timestamp): `max_failures` failures in quick succession lock
//! the key for `cooldown`; failures spread out at no more than `max_failures` per `window` never
//! lock it, and anything between locks once the excess adds up to a burst. Defaults: per
//! (address, identity) 10 failures per minute, per address 30 per minute (many devices may
//! share one NAT address), then a 5-minute cool-down. A locked key refuses attempts from its
//! address before their credentials are checked, and such refusals are not counted again. A
//! success clears the (address, identity) record, not the address's.
//!
//! IPv6 addresses are keyed by their /64 prefix (one host usually owns a whole /64); identities
//! by a 128-bit SHA-256 prefix, so every entry has a fixed size and no username is kept.
//! Memory is bounded: at most `max_tracked` keys (*default* 100,000, a few MiB); when full, the
//! key tracked longest is forgotten first. Time is passed in; nothing here reads a clock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// One limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitRule {
    /// Failures within `window` that lock the key.
    pub max_failures: u32,
    /// The window.
    pub window: Duration,
    /// How long a locked key stays locked.
    pub cooldown: Duration,
}

/// The limiter's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Per source address (IPv6: per /64).
    pub per_address: LimitRule,
    /// Per (source address, claimed identity): an MQTT username, an API key id, a token's
    /// device, `admin`.
    pub per_identity: LimitRule,
    /// Most keys tracked at once; beyond it the key tracked longest is forgotten.
    pub max_tracked: usize,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        let minute = Duration::from_secs(60);
        let cooldown = Duration::from_secs(300);
        Self {
            per_address: LimitRule { max_failures: 30, window: minute, cooldown },
            per_identity: LimitRule { max_failures: 10, window: minute, cooldown },
            max_tracked: 100_000,
        }
    }
}

/// Authentication from this address is refused without checking the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed authentications from this address; retry after {retry_after:?}")]
pub struct Throttled {
    /// When the lock ends.
    pub retry_after: Duration,
}

/// What a failure locked, for the caller's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    /// The source address, for every identity.
    Address,
    /// The claimed identity, from this address only.
    Identity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Identity(IpAddr, [u8; 16]),
}

/// The address as limits see it: IPv4-mapped IPv6 as IPv4, other IPv6 cut to its /64.
fn address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
        v4 => v4,
    }
}

fn identity_key(ip: IpAddr, identity: &str) -> Key {
    let digest = Sha256::digest(identity.as_bytes());
    let mut prefix = [0u8; 16];
    prefix.copy_from_slice(&digest[..16]);
    Key::Identity(address(ip), prefix)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// GCRA theoretical arrival time, epoch ms.
    tat_ms: u64,
    /// Locked until, epoch ms (0: not locked).
    locked_until_ms: u64,
    /// Matches the entry's slot in the eviction queue.
    generation: u64,
}

/// Tracks failed authentications; see the module docs. Not synchronized: the caller wraps it
/// in a mutex (every operation is short).
#[derive(Debug)]
pub struct AuthLimiter {
    config: LimiterConfig,
    entries: HashMap<Key, Entry>,
    order: VecDeque<(Key, u64)>,
    next_generation: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl AuthLimiter {
    /// An empty limiter.
    pub fn new(config: LimiterConfig) -> Self {
        Self { config, entries: HashMap::new(), order: VecDeque::new(), next_generation: 0 }
    }

    fn keys(ip: IpAddr, identity: Option<&str>) -> impl Iterator<Item = Key> {
        std::iter::once(Key::Address(address(ip))).chain(identity.map(|id| identity_key(ip, id)))
    }

    /// Whether an attempt from `ip` claiming `identity` may be checked at `now_ms`.
    pub fn check(&self, ip: IpAddr, identity: Option<&str>, now_ms: u64) -> Result<(), Throttled> {
        let locked_until =
            Self::keys(ip, identity).filter_map(|k| self.entries.get(&k)).map(|e| e.locked_until_ms).max().unwrap_or(0);
        if locked_until > now_ms {
            Err(Throttled { retry_after: Duration::from_millis(locked_until - now_ms) })
        } else {
            Ok(())
        }
    }

    /// Records a failed attempt; returns what it locked, if anything.
    pub fn record_failure(&mut self, ip: IpAddr, identity: Option<&str>, now_ms: u64) -> Option<Locked> {
        let mut locked = None;
        for key in Self::keys(ip, identity) {
            let (rule, what) = match key {
                Key::Address(_) => (self.config.per_address, Locked::Address),
                Key::Identity(..) => (self.config.per_identity, Locked::Identity),
            };
            if self.fail(key, rule, now_ms) {
                locked = locked.or(Some(what));
            }
        }
        locked
    }

    /// Records a success: the failures of `identity` from `ip` are forgotten (the address's
    /// own count stays, so a valid client behind a NAT does not reset an attacker beside it).
    pub fn record_success(&mut self, ip: IpAddr, identity: &str) {
        self.entries.remove(&identity_key(ip, identity));
    }

    /// How many keys are tracked.
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Counts one failure against `key`; true when it locked the key.
    fn fail(&mut self, key: Key, rule: LimitRule, now_ms: u64) -> bool {
        if !self.entries.contains_key(&key) {
            self.make_room();
            let generation = self.next_generation;
            self.next_generation += 1;
            self.order.push_back((key, generation));
            self.entries.insert(key, Entry { tat_ms: now_ms, locked_until_ms: 0, generation });
        }
        let entry = self.entries.get_mut(&key).expect("inserted above");
        let window = millis(rule.window);
        let interval = window / u64::from(rule.max_failures.max(1));
        entry.tat_ms = entry.tat_ms.max(now_ms).saturating_add(interval);
        // A conforming burst is `max_failures - 1` intervals deep; the next failure locks.
        if entry.tat_ms - now_ms > window.saturating_sub(interval) {
            entry.locked_until_ms = now_ms.saturating_add(millis(rule.cooldown));
            entry.tat_ms = now_ms;
            return true;
        }
        false
    }

    /// Forgets the oldest keys until one more fits, and drops stale queue slots.
    fn make_room(&mut self) {
        let max = self.config.max_tracked.max(1);
        while self.entries.len() >= max {
            let Some((key, generation)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&key).is_some_and(|e| e.generation == generation) {
                self.entries.remove(&key);
            }
        }
        if self.order.len() > 2 * max {
            let entries = &self.entries;
            self.order.retain(|(k, g)| entries.get(k).is_some_and(|e| e.generation == *g));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_locks_then_cooldown_unlocks() {
        let mut l = AuthLimiter::new(LimiterConfig::default());
        let a = ip("192.0.2.1");
        for i in 0..9 {
            assert_eq!(l.record_failure(a, Some("u"), 1_000 + i), None, "failure {i}");
            assert_eq!(l.check(a, Some("u"), 1_000 + i), Ok(()), "failure {i}");
        }
        assert_eq!(l.record_failure(a, Some("u"), 1_009), Some(Locked::Identity));
        let refused = l.check(a, Some("u"), 1_009).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(300));
        // The address alone is below its own limit; another identity is fine.
        assert_eq!(l.check(a, Some("v"), 1_010), Ok(()));
        assert_eq!(l.check(a, Some("u"), 1_009 + 300_000), Ok(()));
    }

    #[test]
    fn failures_from_one_address_never_lock_an_identity_out_of_another() {
        let mut l = AuthLimiter::new(LimiterConfig::default());
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for i in 0..50 {
            l.record_failure(a, Some("victim"), i);
        }
        assert!(l.check(a, Some("victim"), 50).is_err());
        assert!(l.check(a, None, 50).is_err(), "50 failures lock the address too");
        assert_eq!(l.check(b, Some("victim"), 50), Ok(()));
        // The same /64 is the same address; another /64 is not.
        let mut l = AuthLimiter::new(LimiterConfig::default());
        for i in 0..10 {
            l.record_failure(ip("2001:db8::1"), Some("victim"), i);
        }
        assert!(l.check(ip("2001:db8::2"), Some("victim"), 10).is_err());
        assert_eq!(l.check(ip("2001:db8:0:1::1"), Some("victim"), 10), Ok(()));
    }

    #[test]
    fn slow_failures_never_lock() {
        let mut l = AuthLimiter::new(LimiterConfig::default());
        let a = ip("192.0.2.1");
        for i in 0..100 {
            let now = i * 6_000;
            l.record_failure(a, Some("u"), now);
            assert_eq!(l.check(a, Some("u"), now), Ok(()), "failure {i}");
        }
    }

    #[test]
    fn address_limit_across_identities() {
        let mut l = AuthLimiter::new(LimiterConfig::default());
        let a = ip("198.51.100.7");
        for i in 0..29 {
            assert_eq!(l.record_failure(a, Some(&format!("user{i}")), 0), None);
        }
        assert_eq!(l.check(a, Some("fresh"), 0), Ok(()));
        assert_eq!(l.record_failure(a, Some("user29"), 0), Some(Locked::Address));
        assert!(l.check(a, Some("fresh"), 0).is_err());
        assert!(l.check(a, None, 0).is_err());
        assert_eq!(l.check(ip("198.51.100.8"), Some("fresh"), 0), Ok(()));
    }

    #[test]
    fn success_clears_that_identity_from_that_address_only() {
        let mut l = AuthLimiter::new(LimiterConfig::default());
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for _ in 0..9 {
            l.record_failure(a, Some("u"), 0);
            l.record_failure(b, Some("u"), 0);
        }
        l.record_success(a, "u");
        l.record_failure(a, Some("u"), 0);
        assert_eq!(l.check(a, Some("u"), 0), Ok(()));
        l.record_failure(b, Some("u"), 0);
        assert!(l.check(b, Some("u"), 0).is_err());
        assert_eq!(l.tracked(), 4);
    }

    #[test]
    fn ipv6_keyed_by_prefix() {
        let mut l = AuthLimiter::new(LimiterConfig::default());
        for i in 0..30 {
            l.record_failure(ip(&format!("2001:db8:1:2::{i:x}")), None, 0);
        }
        assert!(l.check(ip("2001:db8:1:2:ffff::1"), None, 0).is_err());
        assert_eq!(l.check(ip("2001:db8:1:3::1"), None, 0), Ok(()));
        assert_eq!(l.tracked(), 1);
        // IPv4-mapped addresses count as IPv4.
        let mut l = AuthLimiter::new(LimiterConfig::default());
        for _ in 0..30 {
            l.record_failure(ip("::ffff:192.0.2.9"), None, 0);
        }
        assert!(l.check(ip("192.0.2.9"), None, 0).is_err());
    }

    #[test]
    fn memory_is_bounded_oldest_evicted() {
        let config = LimiterConfig { max_tracked: 4, ..LimiterConfig::default() };
        let mut l = AuthLimiter::new(config);
        let a = ip("192.0.2.1");
        for _ in 0..10 {
            l.record_failure(a, Some("victim"), 0);
        }
        assert!(l.check(a, Some("victim"), 0).is_err());
        for i in 0..1_000 {
            let spray = ip(&format!("203.0.{}.{}", i / 250, i % 250));
            l.record_failure(spray, Some(&format!("spray{i}")), 1);
            l.record_success(spray, &format!("spray{}", i / 2));
            assert!(l.tracked() <= 4);
            assert!(l.order.len() <= 2 * 4 + 1);
        }
        // The oldest keys went first.
        assert_eq!(l.check(a, Some("victim"), 2), Ok(()));
    }

    #[test]
    fn degenerate_config_does_not_panic() {
        let config = LimiterConfig {
            per_address: LimitRule { max_failures: 0, window: Duration::ZERO, cooldown: Duration::MAX },
            per_identity: LimitRule { max_failures: u32::MAX, window: Duration::MAX, cooldown: Duration::ZERO },
            max_tracked: 0,
        };
        let mut l = AuthLimiter::new(config);
        l.record_failure(ip("192.0.2.1"), Some("u"), u64::MAX);
        l.record_failure(ip("192.0.2.1"), Some("u"), 0);
        assert!(l.tracked() <= 1);
    }
}
