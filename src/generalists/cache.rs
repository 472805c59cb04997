//! Embedding cache. The image encoder is the costly, prompt-independent part of a SAM model, so
//! each unlabeled slice (at its un-augmented geometry) is encoded once and looked up afterwards.
//! A cache belongs to one set of weights: its identity is part of the key, so embeddings of
//! different weights never mix.
//!
//! The cache is bounded twice: by a number of entries and by the bytes they hold (an
//! embedding's size is the caller's to say, through a function given at construction). When
//! either bound would be passed, the least recently used entries leave first: a training run
//! draws a case and prompts its slices together, so a case drawn a while ago is the one least
//! likely to be needed next.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where an embedding comes from: case, slicing axis, slice index, weights identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmbeddingKey {
    pub case_id: String,
    pub axis: usize,
    pub slice: usize,
    pub weights: String,
}

/// Hit/miss counters and the time spent computing embeddings (for the SAM overhead report).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Entries dropped to stay within the bounds.
    pub evictions: u64,
    pub compute_time: Duration,
}

struct Entry<E> {
    value: Arc<E>,
    bytes: usize,
    /// The clock reading of the last use (the key of this entry in `recency`).
    used: u64,
}

/// An in-memory embedding cache bounded by entries and bytes, evicting the least recently used.
pub struct EmbeddingCache<E> {
    entries: HashMap<EmbeddingKey, Entry<E>>,
    /// Last-use clock reading → key: the first entry is the least recently used.
    recency: BTreeMap<u64, EmbeddingKey>,
    clock: u64,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    size_of: fn(&E) -> usize,
    stats: CacheStats,
}

impl<E> EmbeddingCache<E> {
    /// A cache holding at most `capacity` embeddings, whatever their size.
    pub fn new(capacity: usize) -> Self {
        Self::with_budget(capacity, usize::MAX, |_| 0)
    }

    /// A cache holding at most `max_entries` embeddings and at most `max_bytes` of them as
    /// measured by `size_of`. An embedding larger than `max_bytes` on its own is handed back
    /// without being kept.
    pub fn with_budget(max_entries: usize, max_bytes: usize, size_of: fn(&E) -> usize) -> Self {
        EmbeddingCache {
            entries: HashMap::new(),
            recency: BTreeMap::new(),
            clock: 0,
            max_entries: max_entries.max(1),
            max_bytes,
            bytes: 0,
            size_of,
            stats: CacheStats::default(),
        }
    }

    /// The same cache, also bounded to `max_bytes` (set before use: nothing is evicted here).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held by the cached embeddings (as measured by the cache's size function).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `key` is cached (without counting a hit or refreshing its recency).
    pub fn contains(&self, key: &EmbeddingKey) -> bool {
        self.entries.contains_key(key)
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The cached value for `key` (a hit, now the most recently used), or `None` (a miss).
    pub fn get(&mut self, key: &EmbeddingKey) -> Option<Arc<E>> {
        let now = self.tick();
        let entry = self.entries.get_mut(key)?;
        self.stats.hits += 1;
        let key = self
            .recency
            .remove(&entry.used)
            .expect("every entry has a recency");
        entry.used = now;
        self.recency.insert(now, key);
        Some(Arc::clone(&entry.value))
    }

    /// Keep `value` under `key` (replacing what was there), evicting the least recently used
    /// entries to stay within the bounds; a value larger than the byte bound is handed back
    /// without being kept.
    pub fn insert(&mut self, key: EmbeddingKey, value: E) -> Arc<E> {
        let now = self.tick();
        let value = Arc::new(value);
        if let Some(old) = self.entries.remove(&key) {
            self.recency.remove(&old.used);
            self.bytes -= old.bytes;
        }
        let bytes = (self.size_of)(&value);
        if bytes > self.max_bytes {
            return value;
        }
        while self.entries.len() >= self.max_entries || self.bytes + bytes > self.max_bytes {
            let Some((_, oldest)) = self.recency.pop_first() else {
                break;
            };
            let evicted = self.entries.remove(&oldest).expect("recency names entries");
            self.bytes -= evicted.bytes;
            self.stats.evictions += 1;
        }
        self.bytes += bytes;
        self.recency.insert(now, key.clone());
        self.entries.insert(
            key,
            Entry {
                value: Arc::clone(&value),
                bytes,
                used: now,
            },
        );
        value
    }

    /// The cached embedding for `key`, computing (and timing) it with `compute` on a miss.
    pub fn get_or_compute<Err>(
        &mut self,
        key: EmbeddingKey,
        compute: impl FnOnce() -> Result<E, Err>,
    ) -> Result<Arc<E>, Err> {
        if let Some(value) = self.get(&key) {
            return Ok(value);
        }
        let started = Instant::now();
        let value = compute()?;
        self.stats.compute_time += started.elapsed();
        self.stats.misses += 1;
        Ok(self.insert(key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(slice: usize) -> EmbeddingKey {
        EmbeddingKey {
            case_id: "case".into(),
            axis: 2,
            slice,
            weights: "w".into(),
        }
    }

    fn fetch(cache: &mut EmbeddingCache<Vec<u8>>, slice: usize, len: usize, calls: &mut usize) {
        let value = cache
            .get_or_compute(key(slice), || {
                *calls += 1;
                Ok::<_, ()>(vec![slice as u8; len])
            })
            .unwrap();
        assert_eq!(*value, vec![slice as u8; len]);
    }

    #[test]
    fn computes_once_then_hits_and_evicts_the_least_recently_used() {
        let mut cache = EmbeddingCache::new(2);
        let mut calls = 0;
        for slice in [0, 1, 0, 2, 0, 1] {
            let value = cache
                .get_or_compute(key(slice), || {
                    calls += 1;
                    Ok::<_, ()>(slice * 10)
                })
                .unwrap();
            assert_eq!(*value, slice * 10);
        }
        // 0, 1 computed; 0 hit (1 is now the least recent); 2 computed (evicts 1); 0 hit;
        // 1 computed (evicts 2, not the recently used 0)
        assert_eq!(calls, 4);
        assert_eq!(cache.stats().hits, 2);
        assert_eq!(cache.stats().misses, 4);
        assert_eq!(cache.stats().evictions, 2);
        assert_eq!(cache.len(), 2);
        assert!(cache.contains(&key(0)) && cache.contains(&key(1)));
        assert!(!cache.contains(&key(2)));
    }

    #[test]
    fn the_byte_budget_is_never_exceeded() {
        let mut cache: EmbeddingCache<Vec<u8>> = EmbeddingCache::with_budget(100, 1000, Vec::len);
        let mut calls = 0;
        let sizes = [300, 300, 300, 200, 600, 100, 1000, 50];
        let mut peak = 0;
        for (slice, &len) in sizes.iter().enumerate() {
            fetch(&mut cache, slice, len, &mut calls);
            let held: usize = (0..sizes.len())
                .filter(|&s| cache.contains(&key(s)))
                .map(|s| sizes[s])
                .sum();
            assert_eq!(cache.bytes(), held, "after slice {slice}");
            assert!(
                cache.bytes() <= 1000,
                "{} bytes after slice {slice}",
                cache.bytes()
            );
            peak = peak.max(cache.bytes());
        }
        assert_eq!(peak, 1000, "the budget is used up to its limit");
        // 300+300+300 = 900; 200 evicts slice 0 (800); 600 evicts 1 and 2 (800); 100 fits (900);
        // 1000 evicts everything else; 50 evicts the 1000
        assert_eq!(cache.len(), 1);
        assert!(cache.contains(&key(7)));
        assert_eq!(cache.stats().evictions, 7);
    }

    #[test]
    fn an_embedding_beyond_the_budget_is_returned_but_not_kept() {
        let mut cache: EmbeddingCache<Vec<u8>> = EmbeddingCache::with_budget(100, 10, Vec::len);
        let mut calls = 0;
        fetch(&mut cache, 0, 4, &mut calls);
        fetch(&mut cache, 1, 11, &mut calls);
        assert!(cache.contains(&key(0)) && !cache.contains(&key(1)));
        assert_eq!(cache.bytes(), 4);
        fetch(&mut cache, 1, 11, &mut calls);
        assert_eq!(calls, 3);
    }

    #[test]
    fn inserting_over_a_key_replaces_its_value_and_its_bytes() {
        let mut cache: EmbeddingCache<Vec<u8>> = EmbeddingCache::with_budget(100, 10, Vec::len);
        cache.insert(key(0), vec![1; 4]);
        cache.insert(key(1), vec![2; 4]);
        cache.insert(key(0), vec![3; 6]);
        assert_eq!(cache.bytes(), 10);
        assert_eq!(cache.len(), 2);
        assert_eq!(*cache.get(&key(0)).unwrap(), vec![3; 6]);
        // key 1 is now the least recently used: the next insert evicts it, not key 0
        cache.insert(key(2), vec![4; 3]);
        assert!(cache.contains(&key(0)) && cache.contains(&key(2)) && !cache.contains(&key(1)));
        assert_eq!(cache.bytes(), 9);
        assert!(cache.get(&key(1)).is_none());
        assert_eq!(cache.stats().hits, 1);
    }

    #[test]
    fn weights_identity_separates_entries() {
        let mut cache = EmbeddingCache::new(8);
        let mut other = key(0);
        other.weights = "other".into();
        cache.get_or_compute(key(0), || Ok::<_, ()>(1)).unwrap();
        assert_eq!(*cache.get_or_compute(other, || Ok::<_, ()>(2)).unwrap(), 2);
    }

    #[test]
    fn failed_computation_is_not_cached() {
        let mut cache: EmbeddingCache<u8> = EmbeddingCache::new(4);
        assert!(cache.get_or_compute(key(3), || Err("boom")).is_err());
        assert_eq!(
            *cache.get_or_compute(key(3), || Ok::<_, &str>(7)).unwrap(),
            7
        );
        assert_eq!(cache.stats().misses, 1);
    }
}
