//! Failed-login limiting per client IP: after `max` failures within a minute, the IP is
//! refused (429) for `lockout`, right credentials included.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window in which failures are counted.
const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Entry {
    failures: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

/// Counts failed logins per client IP.
#[derive(Debug)]
pub struct LoginLimiter {
    max: u32,
    lockout: Duration,
    ips: Mutex<HashMap<IpAddr, Entry>>,
}

impl LoginLimiter {
    /// A limiter refusing an IP for `lockout` after `max` failures in a minute.
    pub fn new(max: u32, lockout: Duration) -> Self {
        LoginLimiter {
            max,
            lockout,
            ips: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` while `ip` is locked out.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        let Some(ip) = ip else { return Ok(()) };
        let ips = self.ips.lock().expect("login limiter");
        match ips.get(&ip).and_then(|e| e.locked_until) {
            Some(until) if until > Instant::now() => Err(until - Instant::now()),
            _ => Ok(()),
        }
    }

    /// Records a failed login from `ip`.
    pub fn failed(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let now = Instant::now();
        let mut ips = self.ips.lock().expect("login limiter");
        if ips.len() > 100_000 {
            let keep = WINDOW.max(self.lockout);
            ips.retain(|_, e| now.duration_since(e.first) < keep);
        }
        let e = ips.entry(ip).or_insert(Entry {
            failures: 0,
            first: now,
            locked_until: None,
        });
        if now.duration_since(e.first) > WINDOW || e.locked_until.is_some_and(|u| u <= now) {
            *e = Entry {
                failures: 0,
                first: now,
                locked_until: None,
            };
        }
        e.failures += 1;
        if e.failures >= self.max {
            e.locked_until = Some(now + self.lockout);
            tracing::warn!(%ip, failures = e.failures, lockout = ?self.lockout, "too many failed logins; client locked out");
        }
    }

    /// Forgets the failures of `ip` after a successful login.
    pub fn succeeded(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            let mut ips = self.ips.lock().expect("login limiter");
            if ips.get(&ip).is_some_and(|e| e.locked_until.is_none()) {
                ips.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_is_locked_out_after_max_failures_and_others_are_not() {
        let l = LoginLimiter::new(3, Duration::from_secs(30));
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        for _ in 0..2 {
            l.failed(a);
            assert!(l.check(a).is_ok());
        }
        l.failed(a);
        assert!(l.check(a).unwrap_err() <= Duration::from_secs(30));
        assert!(l.check(b).is_ok());
    }

    #[test]
    fn success_resets_the_failure_count() {
        let l = LoginLimiter::new(2, Duration::from_secs(30));
        let a = Some("10.0.0.1".parse().unwrap());
        l.failed(a);
        l.succeeded(a);
        l.failed(a);
        assert!(l.check(a).is_ok());
    }

    #[test]
    fn the_lockout_ends() {
        let l = LoginLimiter::new(1, Duration::from_millis(20));
        let a = Some("10.0.0.1".parse().unwrap());
        l.failed(a);
        assert!(l.check(a).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(l.check(a).is_ok());
    }
}
