//! The in-process cache for GETs: a map with a time to live per entry and least
//! recently used eviction past its capacity. Each operation runs in a `cache.get`,
//! `cache.put` or `cache.invalidate` span (level debug) with `cache.key`; `cache.get`
//! also records `cache.hit`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zs_observe::instrumented;

struct Entry {
    value: String,
    inserted: Instant,
    used: u64,
}

struct Inner {
    map: HashMap<String, Entry>,
    clock: u64,
}

/// A TTL + LRU map from keys (`task:7`) to serialized JSON bodies.
pub(crate) struct Cache {
    inner: Mutex<Inner>,
    ttl: Duration,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Cache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Cache {
        let cache = Cache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                clock: 0,
            }),
            ttl,
            capacity: capacity.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        };
        metrics::counter!("ains_cache_hits_total").increment(0);
        metrics::counter!("ains_cache_misses_total").increment(0);
        cache.publish(0);
        cache
    }

    /// The fresh value under `key`, if any; counts a hit or a miss.
    #[instrumented(
        span = "cache.get",
        level = "debug",
        histogram = "ains_cache_operation_duration_seconds",
        labels(operation = "get"),
        fields(cache.key = key, cache.hit),
        skip(self, key)
    )]
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        let mut inner = self.inner.lock().ok()?;
        inner.clock += 1;
        let now = inner.clock;
        let ttl = self.ttl;
        let found = match inner.map.get_mut(key) {
            Some(e) if e.inserted.elapsed() <= ttl => {
                e.used = now;
                Some(e.value.clone())
            }
            Some(_) => {
                inner.map.remove(key);
                None
            }
            None => None,
        };
        let len = inner.map.len();
        drop(inner);
        zs_observe::record_current("cache.hit", found.is_some());
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("ains_cache_hits_total").increment(1);
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("ains_cache_misses_total").increment(1);
        }
        self.publish(len);
        found
    }

    /// Stores `value` under `key`, evicting the least recently used entry when full.
    #[instrumented(
        span = "cache.put",
        level = "debug",
        histogram = "ains_cache_operation_duration_seconds",
        labels(operation = "put"),
        fields(cache.key = key.as_str()),
        skip(self, key, value)
    )]
    pub(crate) fn put(&self, key: String, value: String) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.clock += 1;
        let used = inner.clock;
        if !inner.map.contains_key(&key) && inner.map.len() >= self.capacity {
            let oldest = inner
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                inner.map.remove(&k);
            }
        }
        inner.map.insert(
            key,
            Entry {
                value,
                inserted: Instant::now(),
                used,
            },
        );
        let len = inner.map.len();
        drop(inner);
        self.publish(len);
    }

    /// Drops `key` (after a write to what it caches).
    #[instrumented(
        span = "cache.invalidate",
        level = "debug",
        histogram = "ains_cache_operation_duration_seconds",
        labels(operation = "invalidate"),
        fields(cache.key = key),
        skip(self, key)
    )]
    pub(crate) fn invalidate(&self, key: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.map.remove(key);
        let len = inner.map.len();
        drop(inner);
        self.publish(len);
    }

    /// Entries held, or an error when the cache is unusable (the readiness check).
    pub(crate) fn check(&self) -> Result<usize, String> {
        let inner = self
            .inner
            .lock()
            .map_err(|_| "the cache's lock is poisoned".to_string())?;
        if inner.map.len() > self.capacity {
            return Err(format!(
                "{} entries over a capacity of {}",
                inner.map.len(),
                self.capacity
            ));
        }
        Ok(inner.map.len())
    }

    /// Hits divided by lookups so far (0 before the first lookup).
    pub(crate) fn hit_ratio(&self) -> f64 {
        let hits = self.hits.load(Ordering::Relaxed) as f64;
        let total = hits + self.misses.load(Ordering::Relaxed) as f64;
        if total == 0.0 {
            0.0
        } else {
            hits / total
        }
    }

    fn publish(&self, len: usize) {
        metrics::gauge!("ains_cache_entries").set(len as f64);
        metrics::gauge!("ains_cache_hit_ratio").set(self.hit_ratio());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_misses_and_expiry() {
        let cache = Cache::new(4, Duration::from_millis(30));
        assert_eq!(cache.get("a"), None);
        cache.put("a".into(), "1".into());
        assert_eq!(cache.get("a").as_deref(), Some("1"));
        assert!((cache.hit_ratio() - 0.5).abs() < 1e-9);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get("a"), None, "expired");
        assert_eq!(cache.check(), Ok(0));
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let cache = Cache::new(2, Duration::from_secs(60));
        cache.put("a".into(), "1".into());
        cache.put("b".into(), "2".into());
        assert!(cache.get("a").is_some());
        cache.put("c".into(), "3".into());
        assert!(cache.get("b").is_none(), "b was least recently used");
        assert!(cache.get("a").is_some());
        assert!(cache.get("c").is_some());
        cache.invalidate("a");
        assert!(cache.get("a").is_none());
        assert_eq!(cache.check(), Ok(1));
    }
}
