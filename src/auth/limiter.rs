//! Failed-login limiting per client IP: after `max` failures within a minute, the IP is
//! refused (429) for `lockout`, right credentials included.
//!
//! An attempt is counted *before* its password is checked (`begin`): failures plus attempts in
//! flight never exceed `max`, so a burst of wrong passwords sent at once gets at most `max`
//! bcrypt checks and 429 for the rest. A request that finds every slot taken by attempts in
//! flight waits for one of them to end (a success frees the client, a failure may lock it), so
//! a burst of right passwords from one client is not refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The window in which failures are counted.
const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Entry {
    failures: u32,
    /// Attempts counted but not yet decided.
    pending: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    fn fresh(now: Instant) -> Entry {
        Entry {
            failures: 0,
            pending: 0,
            first: now,
            locked_until: None,
        }
    }
}

/// Counts failed logins per client IP.
#[derive(Debug)]
pub struct LoginLimiter {
    max: u32,
    lockout: Duration,
    ips: Mutex<HashMap<IpAddr, Entry>>,
    /// Woken whenever an attempt ends.
    ended: Notify,
}

/// Why an attempt may not start now.
enum Refused {
    Locked(Duration),
    Busy,
}

/// A login attempt counted against its IP; decide it with `succeeded` or `failed`. Dropped
/// undecided (the request went away), it is forgotten.
#[derive(Debug)]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    ip: Option<IpAddr>,
    decided: bool,
}

impl Attempt<'_> {
    /// The password was right: the IP's failures are forgotten (unless it is locked out).
    pub fn succeeded(mut self) {
        self.decided = true;
        self.limiter.end(self.ip, false);
    }

    /// The password was wrong: one more failure, maybe a lockout.
    pub fn failed(mut self) {
        self.decided = true;
        self.limiter.end(self.ip, true);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.decided {
            self.limiter.end_undecided(self.ip);
        }
    }
}

impl LoginLimiter {
    /// A limiter refusing an IP for `lockout` after `max` failures in a minute.
    pub fn new(max: u32, lockout: Duration) -> Self {
        LoginLimiter {
            max,
            lockout,
            ips: Mutex::new(HashMap::new()),
            ended: Notify::new(),
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

    /// Counts an attempt from `ip` before its password is checked; `Err(retry_after)` when
    /// the IP is locked out. Waits while earlier attempts in flight hold every slot.
    pub async fn begin(&self, ip: Option<IpAddr>) -> Result<Attempt<'_>, Duration> {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            match self.try_begin(ip) {
                Ok(a) => return Ok(a),
                Err(Refused::Locked(retry)) => return Err(retry),
                Err(Refused::Busy) => ended.await,
            }
        }
    }

    fn try_begin(&self, ip: Option<IpAddr>) -> Result<Attempt<'_>, Refused> {
        let counted = || Attempt {
            limiter: self,
            ip,
            decided: false,
        };
        let Some(addr) = ip else { return Ok(counted()) };
        let now = Instant::now();
        let mut ips = self.ips.lock().expect("login limiter");
        if ips.len() > 100_000 {
            let keep = WINDOW.max(self.lockout);
            ips.retain(|_, e| e.pending > 0 || now.duration_since(e.first) < keep);
        }
        let e = ips.entry(addr).or_insert_with(|| Entry::fresh(now));
        match e.locked_until {
            Some(until) if until > now => return Err(Refused::Locked(until - now)),
            Some(_) => {
                *e = Entry {
                    pending: e.pending,
                    ..Entry::fresh(now)
                }
            }
            None if now.duration_since(e.first) > WINDOW => {
                *e = Entry {
                    pending: e.pending,
                    ..Entry::fresh(now)
                };
            }
            None => {}
        }
        if e.failures + e.pending >= self.max {
            return Err(Refused::Busy);
        }
        e.pending += 1;
        Ok(counted())
    }

    /// Ends an attempt of `ip`, a failure or a success.
    fn end(&self, ip: Option<IpAddr>, failed: bool) {
        if let Some(ip) = ip {
            let now = Instant::now();
            let mut ips = self.ips.lock().expect("login limiter");
            if let Some(e) = ips.get_mut(&ip) {
                e.pending = e.pending.saturating_sub(1);
                if failed {
                    e.failures += 1;
                    if e.failures >= self.max && e.locked_until.is_none() {
                        e.locked_until = Some(now + self.lockout);
                        tracing::warn!(%ip, failures = e.failures, lockout = ?self.lockout, "too many failed logins; client locked out");
                    }
                } else if e.locked_until.is_none() {
                    e.failures = 0;
                }
                if e.pending == 0 && e.failures == 0 && e.locked_until.is_none() {
                    ips.remove(&ip);
                }
            }
        }
        self.ended.notify_waiters();
    }

    fn end_undecided(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip
            && let Some(e) = self.ips.lock().expect("login limiter").get_mut(&ip)
        {
            e.pending = e.pending.saturating_sub(1);
        }
        self.ended.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(l: &LoginLimiter, ip: Option<IpAddr>) {
        l.try_begin(ip).ok().expect("attempt allowed").failed();
    }

    #[test]
    fn an_ip_is_locked_out_after_max_failures_and_others_are_not() {
        let l = LoginLimiter::new(3, Duration::from_secs(30));
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        for _ in 0..2 {
            fail(&l, a);
            assert!(l.check(a).is_ok());
        }
        fail(&l, a);
        assert!(l.check(a).unwrap_err() <= Duration::from_secs(30));
        assert!(matches!(l.try_begin(a), Err(Refused::Locked(_))));
        assert!(l.check(b).is_ok());
    }

    #[test]
    fn attempts_in_flight_count_before_they_are_decided() {
        let l = LoginLimiter::new(3, Duration::from_secs(30));
        let a = Some("10.0.0.1".parse().unwrap());
        let held: Vec<_> = (0..3).map(|_| l.try_begin(a).ok().unwrap()).collect();
        assert!(matches!(l.try_begin(a), Err(Refused::Busy)));
        for h in held {
            h.failed();
        }
        assert!(matches!(l.try_begin(a), Err(Refused::Locked(_))));
    }

    #[test]
    fn an_undecided_attempt_frees_its_slot_when_dropped() {
        let l = LoginLimiter::new(1, Duration::from_secs(30));
        let a = Some("10.0.0.1".parse().unwrap());
        drop(l.try_begin(a).ok().unwrap());
        assert!(l.try_begin(a).is_ok());
    }

    #[test]
    fn success_resets_the_failure_count() {
        let l = LoginLimiter::new(2, Duration::from_secs(30));
        let a = Some("10.0.0.1".parse().unwrap());
        fail(&l, a);
        l.try_begin(a).ok().unwrap().succeeded();
        fail(&l, a);
        assert!(l.check(a).is_ok());
    }

    #[test]
    fn the_lockout_ends() {
        let l = LoginLimiter::new(1, Duration::from_millis(20));
        let a = Some("10.0.0.1".parse().unwrap());
        fail(&l, a);
        assert!(l.check(a).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(l.check(a).is_ok());
    }
}

#[cfg(test)]
mod burst {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_gets_at_most_max_attempts() {
        let l = Arc::new(LoginLimiter::new(5, Duration::from_secs(60)));
        let ran = Arc::new(AtomicU32::new(0));
        let ip = Some("10.0.0.1".parse().unwrap());
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let (l, ran) = (l.clone(), ran.clone());
                tokio::spawn(async move {
                    if let Ok(a) = l.begin(ip).await {
                        ran.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        a.failed();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(ran.load(Ordering::SeqCst), 5);
    }
}
