//! Rate limits: token buckets per API token (requests) and per device (fixes), so one client or
//! one flooding device cannot starve the others. Buckets live in a cache bounded in entries
//! that forgets idle ones, so memory stays bounded however many devices appear.

use std::borrow::Borrow;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Rates and bursts; a rate of 0 turns that limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests per second each token may make on average.
    pub token_requests_per_s: f64,
    /// Requests a token may make at once.
    pub token_burst: f64,
    /// Fixes per second each device may send on average.
    pub device_fixes_per_s: f64,
    /// Fixes a device may send at once (an app uploading its buffer after a tunnel).
    pub device_burst: f64,
    /// Most buckets kept; idle ones are dropped first.
    pub max_tracked: u64,
    /// Failed authentications (an unknown token) per minute from one client address; past
    /// them the address is refused before its token is even looked at.
    pub failed_auth_per_min: f64,
    /// Failed authentications one address may make at once.
    pub failed_auth_burst: f64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            token_requests_per_s: 1_000.0,
            token_burst: 2_000.0,
            device_fixes_per_s: 20.0,
            device_burst: 10_000.0,
            max_tracked: 1_000_000,
            failed_auth_per_min: 30.0,
            failed_auth_burst: 30.0,
        }
    }
}

/// One family of token buckets, by key: a token, a device id, a client address.
#[derive(Debug, Clone)]
pub struct RateLimiter<K: Hash + Eq + Send + Sync + 'static = String> {
    rate: f64,
    burst: f64,
    buckets: moka::sync::Cache<K, Arc<Mutex<Bucket>>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl<K: Hash + Eq + Send + Sync + 'static> RateLimiter<K> {
    pub fn new(rate_per_s: f64, burst: f64, max_tracked: u64) -> Self {
        // A bucket idle long enough to refill completely holds no state worth keeping.
        let refill = if rate_per_s > 0.0 { burst / rate_per_s } else { 1.0 };
        Self {
            rate: rate_per_s,
            burst: burst.max(1.0),
            buckets: moka::sync::Cache::builder()
                .max_capacity(max_tracked)
                .time_to_idle(Duration::from_secs_f64(refill.clamp(1.0, 86_400.0)))
                .build(),
        }
    }

    /// Takes `n` units for `key`, or says how long until they would be there.
    pub fn try_take<Q>(&self, key: &Q, n: f64) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let bucket = self.buckets.get_with_by_ref(key, || {
            Arc::new(Mutex::new(Bucket {
                tokens: self.burst,
                updated: Instant::now(),
            }))
        });
        self.refilled(&bucket, |bucket, rate, burst| {
            // A request larger than the burst passes when the bucket is full, and is charged in
            // full: the bucket goes into debt, so the next requests wait for all of it.
            let wanted = n.min(burst);
            if bucket.tokens >= wanted {
                bucket.tokens -= n;
                Ok(())
            } else {
                Err(Duration::from_secs_f64((wanted - bucket.tokens) / rate))
            }
        })
    }

    /// Whether `n` units are there for `key` now (taking none), or how long until they are. A
    /// key without a bucket has a full one, and checking does not make it one.
    pub fn check<Q>(&self, key: &Q, n: f64) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let Some(bucket) = self.buckets.get(key) else {
            return Ok(());
        };
        self.refilled(&bucket, |bucket, rate, burst| {
            let wanted = n.min(burst);
            if bucket.tokens >= wanted {
                Ok(())
            } else {
                Err(Duration::from_secs_f64((wanted - bucket.tokens) / rate))
            }
        })
    }

    /// Runs `f` on `bucket`, refilled to now.
    fn refilled(
        &self,
        bucket: &Mutex<Bucket>,
        f: impl FnOnce(&mut Bucket, f64, f64) -> Result<(), Duration>,
    ) -> Result<(), Duration> {
        let mut bucket = bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let refilled = bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * self.rate;
        bucket.tokens = refilled.min(self.burst);
        bucket.updated = now;
        f(&mut bucket, self.rate, self.burst)
    }
}

impl LimitsConfig {
    /// Requests per token.
    pub fn tokens(&self) -> RateLimiter {
        RateLimiter::new(self.token_requests_per_s, self.token_burst, self.max_tracked)
    }

    /// Fixes per device.
    pub fn devices(&self) -> RateLimiter {
        RateLimiter::new(self.device_fixes_per_s, self.device_burst, self.max_tracked)
    }

    /// Failed authentications per client address.
    pub fn failed_auths(&self) -> RateLimiter<IpAddr> {
        RateLimiter::new(
            self.failed_auth_per_min / 60.0,
            self.failed_auth_burst,
            self.max_tracked,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_says_when_to_retry() {
        let limiter = RateLimiter::new(2.0, 3.0, 100);
        assert!(limiter.try_take("a", 3.0).is_ok());
        let wait = limiter.try_take("a", 1.0).expect_err("empty");
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(limiter.try_take("b", 1.0).is_ok(), "buckets are per key");
    }

    #[test]
    fn a_request_larger_than_the_burst_needs_a_full_bucket_and_pays_in_full() {
        let limiter = RateLimiter::new(1.0, 5.0, 100);
        assert!(limiter.try_take("a", 50.0).is_ok());
        let wait = limiter.try_take("a", 1.0).expect_err("in debt");
        assert!(
            wait > Duration::from_secs(45),
            "the debt of 45 fixes is waited out: {wait:?}"
        );
    }

    #[test]
    fn checking_takes_nothing_and_keeps_no_bucket_for_an_unseen_key() {
        let limiter = RateLimiter::<IpAddr>::new(1.0, 2.0, 100);
        let client = IpAddr::from([192, 0, 2, 1]);
        assert!(limiter.check(&client, 1.0).is_ok());
        limiter.buckets.run_pending_tasks();
        assert_eq!(limiter.buckets.entry_count(), 0, "no bucket for a check");
        assert!(limiter.try_take(&client, 2.0).is_ok());
        assert!(limiter.check(&client, 1.0).is_err(), "emptied by the take");
        assert!(
            limiter.check(&IpAddr::from([192, 0, 2, 2]), 1.0).is_ok(),
            "per address"
        );
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        let limiter = RateLimiter::new(0.0, 0.0, 100);
        for _ in 0..1000 {
            assert!(limiter.try_take("a", 10.0).is_ok());
        }
    }
}
