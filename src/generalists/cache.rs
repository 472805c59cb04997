//! Embedding cache. The image encoder is the costly, prompt-independent part of a SAM model, so
//! each unlabeled slice (at its un-augmented geometry) is encoded once and looked up afterwards.
//! A cache belongs to one set of weights: its identity is part of the key, so embeddings of
//! different weights never mix.

use std::collections::HashMap;
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
    pub compute_time: Duration,
}

/// An in-memory embedding cache with an entry limit (oldest entries leave first).
pub struct EmbeddingCache<E> {
    entries: HashMap<EmbeddingKey, Arc<E>>,
    order: std::collections::VecDeque<EmbeddingKey>,
    capacity: usize,
    stats: CacheStats,
}

impl<E> EmbeddingCache<E> {
    /// A cache holding at most `capacity` embeddings.
    pub fn new(capacity: usize) -> Self {
        EmbeddingCache {
            entries: HashMap::new(),
            order: Default::default(),
            capacity: capacity.max(1),
            stats: CacheStats::default(),
        }
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

    /// The cached embedding for `key`, computing (and timing) it with `compute` on a miss.
    pub fn get_or_compute<Err>(
        &mut self,
        key: EmbeddingKey,
        compute: impl FnOnce() -> Result<E, Err>,
    ) -> Result<Arc<E>, Err> {
        if let Some(found) = self.entries.get(&key) {
            self.stats.hits += 1;
            return Ok(Arc::clone(found));
        }
        let started = Instant::now();
        let embedding = Arc::new(compute()?);
        self.stats.compute_time += started.elapsed();
        self.stats.misses += 1;
        if self.entries.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.entries.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, Arc::clone(&embedding));
        Ok(embedding)
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

    #[test]
    fn computes_once_then_hits_and_evicts_oldest_beyond_capacity() {
        let mut cache = EmbeddingCache::new(2);
        let mut calls = 0;
        for slice in [0, 1, 0, 1, 2, 0] {
            let value = cache
                .get_or_compute(key(slice), || {
                    calls += 1;
                    Ok::<_, ()>(slice * 10)
                })
                .unwrap();
            assert_eq!(*value, slice * 10);
        }
        // 0, 1 computed; 0, 1 hit; 2 computed (evicts 0); 0 recomputed (evicts 1)
        assert_eq!(calls, 4);
        assert_eq!(cache.stats().hits, 2);
        assert_eq!(cache.stats().misses, 4);
        assert_eq!(cache.len(), 2);
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
