//! The node's cache of user records for the token paths (every refresh, code redemption,
//! introspection and userinfo reads the user it speaks for).
//!
//! An entry is dropped when this node's follower folds an event of that user, after the
//! store holds the event's record, so a cached record is never older than what this node
//! has applied. A read that raced with such a fold (it read the store before the fold
//! wrote, and would cache what it read after the fold dropped the entry) caches nothing:
//! each drop moves a generation counter, and a read caches only if the counter did not
//! move since before its store read.
//!
//! On one node (`serve`) that is exact: a write answers once the node has applied it. In a
//! cluster, another node's write reaches this cache when this node's follower applies it
//! (milliseconds), like the client projection and the revocation list; reads of the admin
//! API and of the sign-in pages do not use the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use signet_core::user::UserRecord;

/// At most this many records are kept (about 1 KiB each); when full, an arbitrary entry
/// makes room.
pub const CAPACITY: usize = 10_000;

#[derive(Default)]
struct Entries {
    records: HashMap<String, Arc<UserRecord>>,
    /// Moves with every drop.
    generation: u64,
}

/// Recently read user records, by `sub`.
#[derive(Default)]
pub struct RecordCache {
    entries: Mutex<Entries>,
}

/// Taken before a store read; an insertion with a stale ticket is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

impl RecordCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The map is consistent between statements: a panic elsewhere leaves it usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached record of `sub`, or a ticket to cache what the store answers.
    pub fn get(&self, sub: &str) -> Result<Arc<UserRecord>, Ticket> {
        let entries = self.lock();
        match entries.records.get(sub) {
            Some(r) => Ok(r.clone()),
            None => Err(Ticket(entries.generation)),
        }
    }

    /// Caches `record`, read from the store after `ticket` was taken, unless a drop came
    /// in between.
    pub fn insert(&self, ticket: Ticket, record: Arc<UserRecord>) {
        let mut entries = self.lock();
        if entries.generation != ticket.0 {
            return;
        }
        if entries.records.len() >= CAPACITY && !entries.records.contains_key(&record.sub) {
            if let Some(victim) = entries.records.keys().next().cloned() {
                entries.records.remove(&victim);
            }
        }
        entries.records.insert(record.sub.clone(), record);
    }

    /// Drops the record of `sub` (its store record just changed).
    pub fn drop_record(&self, sub: &str) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.records.remove(sub);
    }

    /// Drops everything (the follower stopped: nothing would drop stale records any more).
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.records.clear();
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.lock().records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(sub: &str, enabled: bool) -> Arc<UserRecord> {
        let mut r: UserRecord = serde_json::from_value(serde_json::json!({
            "sub": sub, "username": sub, "passwordHash": "", "claims": {},
            "enabled": enabled, "createdAt": 0, "updatedAt": 0
        }))
        .expect("a user record");
        r.enabled = enabled;
        Arc::new(r)
    }

    #[test]
    fn a_read_that_raced_with_a_drop_caches_nothing() {
        let cache = RecordCache::default();
        let Err(ticket) = cache.get("u1") else {
            panic!("empty cache")
        };
        // The follower folds an event of u1 between the reader's store read and its insert.
        cache.drop_record("u1");
        cache.insert(ticket, user("u1", true));
        assert!(cache.get("u1").is_err(), "a stale record was cached");
        // A read after the drop caches.
        let Err(ticket) = cache.get("u1") else {
            panic!("nothing cached")
        };
        cache.insert(ticket, user("u1", false));
        assert!(cache.get("u1").is_ok_and(|r| !r.enabled));
    }

    #[test]
    fn a_drop_of_another_user_also_voids_older_tickets() {
        let cache = RecordCache::default();
        let Err(ticket) = cache.get("u1") else {
            panic!("empty cache")
        };
        cache.drop_record("u2");
        cache.insert(ticket, user("u1", true));
        assert!(cache.get("u1").is_err());
    }

    #[test]
    fn drops_and_clears_forget_records() {
        let cache = RecordCache::default();
        for sub in ["u1", "u2"] {
            let Err(t) = cache.get(sub) else { panic!() };
            cache.insert(t, user(sub, true));
        }
        cache.drop_record("u1");
        assert!(cache.get("u1").is_err());
        assert!(cache.get("u2").is_ok());
        cache.clear();
        assert!(cache.get("u2").is_err());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = RecordCache::default();
        for i in 0..CAPACITY + 50 {
            let sub = format!("u{i}");
            let Err(t) = cache.get(&sub) else { panic!() };
            cache.insert(t, user(&sub, true));
        }
        assert_eq!(cache.count(), CAPACITY);
        // The newest one is in.
        assert!(cache.get(&format!("u{}", CAPACITY + 49)).is_ok());
    }
}
