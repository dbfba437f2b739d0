//! A bounded cache for what every request reads: its hits write nothing that other threads
//! read, so two cores answering requests for the same token or user don't fight over a cache
//! line.
//!
//! moka, which the verified-token and user caches used alone before, records every hit (the
//! entry's access time, a read log shared by all threads) for its eviction policy. With one
//! hot key on two cores that bookkeeping bounces between them: a hit took 0.3 µs on one
//! thread and 0.8-1.1 µs on each of two (measured in a standalone program; papaya's lock-free
//! read stayed at 0.1 µs on both). This cache evicts crudely instead: when it is full, the next
//! insert empties it. Entries can also carry a deadline after which they are not returned.

use std::borrow::Borrow;
use std::hash::Hash;
use std::time::Instant;

/// Keys are hashed with foldhash, seeded per process. They are never chosen freely by a
/// client: the verified-token cache holds only tokens whose signature checked out (each with
/// its own random `jti`), the user cache only ids from such tokens.
type Hasher = foldhash::fast::RandomState;

/// At most `capacity` entries; a hit reads shared memory and writes none.
pub struct HotCache<K, V> {
    map: papaya::HashMap<K, Slot<V>, Hasher>,
    capacity: usize,
}

struct Slot<V> {
    value: V,
    /// Not returned from this instant on.
    until: Option<Instant>,
}

impl<K, V> HotCache<K, V>
where
    K: Hash + Eq + Send + Sync,
    V: Clone + Send + Sync,
{
    /// `capacity`: most entries held (at least one).
    pub fn new(capacity: usize) -> HotCache<K, V> {
        HotCache {
            map: papaya::HashMap::with_hasher(Hasher::default()),
            capacity: capacity.max(1),
        }
    }

    /// The value kept for `key`, unless its deadline has passed.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read(key, V::clone)
    }

    /// `f` of the value kept for `key`, unless its deadline has passed; the value isn't
    /// cloned (a clone of an `Arc` writes its count, which every thread shares).
    pub fn read<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = self.map.pin();
        let slot = map.get(key)?;
        if slot.until.is_some_and(|until| until <= Instant::now()) {
            return None;
        }
        Some(f(&slot.value))
    }

    /// Keeps `value` for `key` (replacing what was there) until `until`, or until evicted. A
    /// full cache is emptied first: what was evicted is only asked for again.
    pub fn insert(&self, key: K, value: V, until: Option<Instant>) {
        let map = self.map.pin();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key, Slot { value, until });
    }

    /// How many entries are held now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_value_is_returned_until_its_deadline() {
        let cache = HotCache::new(10);
        let now = Instant::now();
        cache.insert(1, "kept", None);
        cache.insert(2, "expires", Some(now + Duration::from_secs(60)));
        cache.insert(3, "expired", Some(now));
        assert_eq!(cache.get(&1), Some("kept"));
        assert_eq!(cache.get(&2), Some("expires"));
        assert_eq!(cache.read(&2, |v| v.len()), Some(7));
        assert_eq!(cache.read(&3, |v| v.len()), None);
        assert_eq!(cache.get(&3), None);
        assert_eq!(cache.get(&4), None);
        cache.insert(3, "again", None);
        assert_eq!(cache.get(&3), Some("again"));
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let cache = HotCache::new(3);
        for i in 0..100 {
            cache.insert(i, i, None);
            assert!(
                cache.len() <= 3,
                "{} entries after inserting {i}",
                cache.len()
            );
            assert_eq!(cache.get(&i), Some(i), "the value just inserted");
        }
    }

    #[test]
    fn keys_are_looked_up_by_their_borrowed_form() {
        let cache: HotCache<std::sync::Arc<str>, u8> = HotCache::new(4);
        cache.insert(std::sync::Arc::from("a.b.c"), 7, None);
        assert_eq!(cache.get("a.b.c"), Some(7));
        assert_eq!(cache.get("a.b.d"), None);
    }
}
