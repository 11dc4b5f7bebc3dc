//! Token-bucket arithmetic, on an injected clock (`now` is time since an arbitrary epoch), so
//! it is tested without sleeping.

use std::time::Duration;

const EPSILON: f64 = 1e-9;

/// A rate: `count` requests per `per` (`"50/s"`, `"600/m"`, `"1/h"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/m` or `N/h` (also `N/sec`, `N/min`, `N/hour`); N ≥ 1.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let bad = || format!("{s:?} is not a rate like \"50/s\", \"600/m\" or \"100/h\"");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!(
                "{s:?}: a rate must allow at least 1 request (leave the key out for no limit)"
            ));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Rate { count, per })
    }

    /// Tokens added per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

/// One bucket: up to `burst` tokens, refilled continuously at the rate; a request takes one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Duration,
}

impl Bucket {
    /// A full bucket.
    pub fn full(burst: u32, now: Duration) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            at: now,
        }
    }

    fn refill(&mut self, per_second: f64, burst: u32, now: Duration) {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(f64::from(burst));
        self.at = self.at.max(now);
    }

    /// Takes a token at `now`: `Ok` when there was one, else `Err(wait)` until there will be
    /// (whole seconds, rounded up, at least one: what `Retry-After` says).
    pub fn take(&mut self, per_second: f64, burst: u32, now: Duration) -> Result<(), u64> {
        self.refill(per_second, burst, now);
        // Refills summed in floating point may fall a hair short of a whole token.
        if self.tokens >= 1.0 - EPSILON {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return Ok(());
        }
        let wait = (1.0 - self.tokens) / per_second;
        Err((wait.ceil() as u64).max(1))
    }

    /// Whether the bucket has refilled completely by `now`: forgetting it changes nothing.
    pub fn is_full(&self, per_second: f64, burst: u32, now: Duration) -> bool {
        let mut b = *self;
        b.refill(per_second, burst, now);
        b.tokens >= f64::from(burst) - EPSILON
    }

    /// How full the bucket is at `now`, 0 to 1 (eviction prefers the fullest).
    pub fn fill(&self, per_second: f64, burst: u32, now: Duration) -> f64 {
        let mut b = *self;
        b.refill(per_second, burst, now);
        b.tokens / f64::from(burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn rates_parse_with_their_unit_and_refuse_nonsense() {
        assert_eq!(Rate::parse("50/s").unwrap().per_second(), 50.0);
        assert_eq!(Rate::parse("120/m").unwrap().per_second(), 2.0);
        assert_eq!(Rate::parse(" 36 / h ").unwrap().per_second(), 0.01);
        for bad in ["", "50", "50/d", "x/s", "-1/s", "1.5/s", "0/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Rate::parse("0/s").unwrap_err().contains("at least 1"));
    }

    #[test]
    fn a_full_bucket_admits_its_burst_then_refuses() {
        let mut b = Bucket::full(3, s(0.0));
        for _ in 0..3 {
            assert_eq!(b.take(1.0, 3, s(0.0)), Ok(()));
        }
        assert_eq!(b.take(1.0, 3, s(0.0)), Err(1));
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_never_past_the_burst() {
        let mut b = Bucket::full(2, s(0.0));
        b.take(2.0, 2, s(0.0)).unwrap();
        b.take(2.0, 2, s(0.0)).unwrap();
        assert!(b.take(2.0, 2, s(0.25)).is_err(), "half a token is not one");
        assert_eq!(b.take(2.0, 2, s(0.5)), Ok(()));
        // A long idle time refills to the burst, not beyond.
        assert!(b.is_full(2.0, 2, s(100.0)));
        for _ in 0..2 {
            b.take(2.0, 2, s(100.0)).unwrap();
        }
        assert!(b.take(2.0, 2, s(100.0)).is_err());
    }

    #[test]
    fn retry_after_is_the_wait_for_one_token_rounded_up_to_whole_seconds() {
        // 1/m: an empty bucket needs 60 s.
        let per = Rate::parse("1/m").unwrap().per_second();
        let mut b = Bucket::full(1, s(0.0));
        b.take(per, 1, s(0.0)).unwrap();
        assert_eq!(b.take(per, 1, s(0.0)), Err(60));
        assert_eq!(b.take(per, 1, s(59.5)), Err(1));
        assert_eq!(b.take(per, 1, s(60.0)), Ok(()));
        // Fast rates still say at least one second.
        let mut b = Bucket::full(1, s(0.0));
        b.take(1000.0, 1, s(0.0)).unwrap();
        assert_eq!(b.take(1000.0, 1, s(0.0)), Err(1));
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let mut b = Bucket::full(1, s(10.0));
        b.take(1.0, 1, s(10.0)).unwrap();
        assert!(b.take(1.0, 1, s(5.0)).is_err());
        assert!(b.take(1.0, 1, s(10.5)).is_err());
        assert_eq!(b.take(1.0, 1, s(11.0)), Ok(()));
    }

    #[test]
    fn fullness_tells_idle_buckets_apart() {
        let mut b = Bucket::full(4, s(0.0));
        assert!(b.is_full(1.0, 4, s(0.0)));
        b.take(1.0, 4, s(0.0)).unwrap();
        b.take(1.0, 4, s(0.0)).unwrap();
        assert_eq!(b.fill(1.0, 4, s(0.0)), 0.5);
        assert!(!b.is_full(1.0, 4, s(1.0)));
        assert!(b.is_full(1.0, 4, s(2.0)));
    }
}
