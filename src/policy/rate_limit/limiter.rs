//! The rate limiter: the compiled limits in a slot a live reload replaces, and one token bucket
//! per (class, client IP or user). Buckets that have refilled completely are forgotten (a fresh
//! one is the same), and the map never holds more than `max_keys`: past it, full buckets are
//! swept, then the fullest tenth is evicted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::bucket::Bucket;
use super::{Class, KeyKind, Limit, Limits};

/// How many buckets are kept at most.
pub const MAX_KEYS: usize = 100_000;

/// New buckets between two sweeps of full ones.
const SWEEP_EVERY: usize = 4096;

/// Whom a bucket belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Ip(IpAddr),
    User(String),
}

impl Key {
    pub fn kind(&self) -> KeyKind {
        match self {
            Key::Ip(_) => KeyKind::Ip,
            Key::User(_) => KeyKind::User,
        }
    }
}

/// A refused request: which limit, and when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub class: Class,
    pub key: Key,
    pub limit: Limit,
    /// Whole seconds until the bucket has a token again (at least 1).
    pub retry_after: u64,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = match &self.key {
            Key::Ip(ip) => format!("client IP {ip}"),
            Key::User(u) => format!("user {u:?}"),
        };
        write!(
            f,
            "too many {} requests from {who}: the {} limit is {} with a burst of {}; retry after {} s",
            self.class.name(),
            match self.key.kind() {
                KeyKind::Ip => "per-IP",
                KeyKind::User => "per-user",
            },
            self.limit.written,
            self.limit.burst,
            self.retry_after
        )
    }
}

/// The time since the limiter's epoch.
pub type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

#[derive(Default)]
struct Buckets {
    map: HashMap<(Class, Key), Bucket>,
    new_since_sweep: usize,
}

/// Token buckets per class and client IP or user, under the limits in force.
pub struct RateLimiter {
    limits: RwLock<Arc<Limits>>,
    buckets: Mutex<Buckets>,
    clock: Clock,
    max_keys: usize,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limits", &self.limits())
            .finish_non_exhaustive()
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(Limits::default())
    }
}

impl RateLimiter {
    /// A limiter enforcing `limits` on the real clock.
    pub fn new(limits: Limits) -> RateLimiter {
        let epoch = Instant::now();
        RateLimiter::with_clock(limits, Arc::new(move || epoch.elapsed()), MAX_KEYS)
    }

    /// A limiter on `clock`, keeping at most `max_keys` buckets.
    pub fn with_clock(limits: Limits, clock: Clock, max_keys: usize) -> RateLimiter {
        super::metrics::set_limits(&limits);
        RateLimiter {
            limits: RwLock::new(Arc::new(limits)),
            buckets: Mutex::default(),
            clock,
            max_keys: max_keys.max(1),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Arc<Limits> {
        self.limits
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `limits` in force (a live reload); every bucket starts full again.
    pub fn set_limits(&self, limits: Limits) {
        super::metrics::set_limits(&limits);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        *self.limits.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(limits);
        *buckets = Buckets::default();
    }

    /// How many buckets are held.
    pub fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }

    /// Takes a token of `class` from `key`'s bucket; `Err` (counted in the metrics) when it
    /// has none. Unlimited classes and key kinds always pass.
    pub fn check(&self, class: Class, key: Key) -> Result<(), Refusal> {
        let limits = self.limits();
        let Some(limit) = limits.limit(class, key.kind()) else {
            return Ok(());
        };
        let (per_second, burst) = (limit.per_second(), limit.burst);
        let now = (self.clock)();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let entry = (class, key);
        let taken = match b.map.get_mut(&entry) {
            Some(bucket) => bucket.take(per_second, burst, now),
            None => {
                self.make_room(&mut b, &limits, now);
                let mut bucket = Bucket::full(burst, now);
                let taken = bucket.take(per_second, burst, now);
                b.map.insert(entry.clone(), bucket);
                taken
            }
        };
        drop(b);
        taken.map_err(|retry_after| {
            let (class, key) = entry;
            super::metrics::refused(class, key.kind());
            Refusal {
                class,
                key,
                limit: limit.clone(),
                retry_after,
            }
        })
    }

    /// Before a new bucket: forgets full ones now and then, and always when the map is at its
    /// bound; evicts the fullest tenth when that was not enough.
    fn make_room(&self, b: &mut Buckets, limits: &Limits, now: Duration) {
        b.new_since_sweep += 1;
        if b.map.len() < self.max_keys && b.new_since_sweep < SWEEP_EVERY {
            return;
        }
        b.new_since_sweep = 0;
        let fill = |(class, key): &(Class, Key), bucket: &Bucket| {
            limits
                .limit(*class, key.kind())
                .map_or(1.0, |l| bucket.fill(l.per_second(), l.burst, now))
        };
        b.map.retain(|k, bucket| fill(k, bucket) < 1.0 - 1e-9);
        if b.map.len() < self.max_keys {
            return;
        }
        let mut by_fill: Vec<(f64, (Class, Key))> =
            b.map.iter().map(|(k, v)| (fill(k, v), k.clone())).collect();
        let evict = (self.max_keys / 10).max(1).min(by_fill.len());
        by_fill.select_nth_unstable_by(evict - 1, |a, c| c.0.total_cmp(&a.0));
        for (_, k) in by_fill.into_iter().take(evict) {
            b.map.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ClassConfig, RateLimitConfig};
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A limiter with `config` on a clock the test moves (`advance`).
    fn limiter(config: RateLimitConfig, max_keys: usize) -> (RateLimiter, Arc<AtomicU64>) {
        let nanos = Arc::new(AtomicU64::new(0));
        let n = nanos.clone();
        let clock: Clock = Arc::new(move || Duration::from_nanos(n.load(Ordering::SeqCst)));
        let l = RateLimiter::with_clock(Limits::compile(&config).unwrap(), clock, max_keys);
        (l, nanos)
    }

    fn advance(clock: &AtomicU64, secs: f64) {
        clock.fetch_add(
            Duration::from_secs_f64(secs).as_nanos() as u64,
            Ordering::SeqCst,
        );
    }

    fn pulls(per_ip: &str, per_user: Option<&str>, burst: u32) -> RateLimitConfig {
        RateLimitConfig {
            pull: ClassConfig {
                per_ip: Some(per_ip.into()),
                per_user: per_user.map(Into::into),
                burst: Some(burst),
            },
            ..Default::default()
        }
    }

    fn ip(n: u8) -> Key {
        Key::Ip(IpAddr::from([192, 0, 2, n]))
    }

    #[test]
    fn each_ip_gets_its_burst_then_a_retry_after_from_its_bucket() {
        let (l, clock) = limiter(pulls("2/s", None, 3), 100);
        for _ in 0..3 {
            l.check(Class::Pull, ip(1)).unwrap();
        }
        let r = l.check(Class::Pull, ip(1)).unwrap_err();
        assert_eq!((r.retry_after, r.limit.burst), (1, 3));
        assert!(
            r.to_string()
                .contains("pull requests from client IP 192.0.2.1"),
            "{r}"
        );
        assert!(r.to_string().contains("per-IP limit is 2/s"), "{r}");
        // Another IP has its own bucket; other classes are unlimited.
        l.check(Class::Pull, ip(2)).unwrap();
        l.check(Class::Push, ip(1)).unwrap();
        advance(&clock, 0.5);
        l.check(Class::Pull, ip(1)).unwrap();
        assert!(l.check(Class::Pull, ip(1)).is_err());
    }

    #[test]
    fn users_have_their_own_limit_and_anonymous_kinds_without_one_pass() {
        let (l, _) = limiter(pulls("100/s", Some("1/h"), 2), 100);
        let alice = || Key::User("alice".into());
        l.check(Class::Pull, alice()).unwrap();
        l.check(Class::Pull, alice()).unwrap();
        let r = l.check(Class::Pull, alice()).unwrap_err();
        assert_eq!(r.retry_after, 3600);
        assert!(r.to_string().contains("per-user"), "{r}");
        l.check(Class::Pull, Key::User("bob".into())).unwrap();
    }

    #[test]
    fn full_buckets_are_forgotten_and_the_map_stays_bounded() {
        let (l, clock) = limiter(pulls("1/s", None, 1), 50);
        for n in 0..50 {
            l.check(Class::Pull, ip(n)).unwrap();
        }
        assert_eq!(l.tracked(), 50);
        // All refilled: the next new key sweeps them away.
        advance(&clock, 2.0);
        l.check(Class::Pull, ip(200)).unwrap();
        assert_eq!(l.tracked(), 1);
        // Without refill, eviction keeps the bound; the emptiest buckets stay.
        for n in 0..120u8 {
            l.check(Class::Pull, ip(n)).unwrap();
            assert!(l.tracked() <= 50);
        }
        assert!(
            l.check(Class::Pull, ip(119)).is_err(),
            "a just-used bucket is kept"
        );
    }

    #[test]
    fn new_limits_reset_the_buckets() {
        let (l, _) = limiter(pulls("1/h", None, 1), 100);
        l.check(Class::Pull, ip(1)).unwrap();
        assert!(l.check(Class::Pull, ip(1)).is_err());
        l.set_limits(Limits::compile(&pulls("1/h", None, 3)).unwrap());
        for _ in 0..3 {
            l.check(Class::Pull, ip(1)).unwrap();
        }
        assert!(l.check(Class::Pull, ip(1)).is_err());
        l.set_limits(Limits::default());
        l.check(Class::Pull, ip(1)).unwrap();
        assert_eq!(l.tracked(), 0, "unlimited requests keep no bucket");
    }

    #[test]
    fn concurrent_takers_get_exactly_the_burst_when_nothing_refills() {
        let (l, _) = limiter(pulls("1/h", None, 25), 100);
        let l = Arc::new(l);
        let admitted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..20 {
                        if l.check(Class::Pull, ip(1)).is_ok() {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::SeqCst), 25);
    }
}
