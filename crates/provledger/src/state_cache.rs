//! Recently folded order states, kept between commands.
//!
//! This module exists because loading an order — reading its stream and
//! folding every event — costs more CPU than deciding a command, and a busy
//! order is loaded again for every command. A [`Ledger`](crate::Ledger)
//! keeps the states it has folded or decided, each exactly the fold of the
//! first `version` events of its stream.
//!
//! Entries are trusted without a read, and that is safe: a command decided
//! on a stale entry (another process wrote the stream meanwhile) is appended
//! at the version the entry was folded to, so the store refuses it with a
//! version conflict; the entry is then dropped and the order reloaded from
//! the store before the command is decided again. A stale entry can cost a
//! retry, never a wrong event.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use provledger_domain::{OrderId, OrderState};

/// How many orders a ledger keeps by default.
pub const DEFAULT_CACHED_ORDERS: usize = 10_000;

/// A bounded map of order states, shared by the threads using one ledger.
#[derive(Debug)]
pub struct OrderCache {
    states: Mutex<HashMap<OrderId, OrderState>>,
    capacity: usize,
}

impl Default for OrderCache {
    fn default() -> Self {
        OrderCache::new(DEFAULT_CACHED_ORDERS)
    }
}

impl OrderCache {
    /// A cache holding at most `capacity` orders (0: caching disabled).
    pub fn new(capacity: usize) -> OrderCache {
        OrderCache {
            states: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<OrderId, OrderState>> {
        // Every update is a single insert or remove: a panic elsewhere
        // cannot leave the map half-changed.
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Orders currently cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The cached state of `order_id`, if any.
    pub fn get(&self, order_id: &OrderId) -> Option<OrderState> {
        self.lock().get(order_id).cloned()
    }

    /// Remember `state` (the fold of the first `state.version` events of the
    /// order's stream, as just written or read).
    pub fn put(&self, order_id: OrderId, state: OrderState) {
        if self.capacity == 0 {
            return;
        }
        let mut states = self.lock();
        if states.len() >= self.capacity && !states.contains_key(&order_id) {
            // Simple and bounded: start afresh rather than track recency.
            states.clear();
        }
        states.insert(order_id, state);
    }

    /// Remember `state` unless the order is cached already (whatever is
    /// there was put by a writer and is at least as new).
    pub fn put_if_absent(&self, order_id: OrderId, state: OrderState) {
        if self.capacity == 0 {
            return;
        }
        let mut states = self.lock();
        if states.contains_key(&order_id) {
            return;
        }
        if states.len() >= self.capacity {
            states.clear();
        }
        states.insert(order_id, state);
    }

    /// Forget `order_id` (its stream moved, or may have).
    pub fn evict(&self, order_id: &OrderId) {
        self.lock().remove(order_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_disabled() {
        let id = |n: u32| OrderId::parse(&format!("WO-{n}")).unwrap();
        let cache = OrderCache::new(2);
        cache.put(id(1), OrderState::default());
        cache.put(id(2), OrderState::default());
        assert_eq!(cache.len(), 2);
        cache.put(id(3), OrderState::default());
        assert!(cache.len() <= 2 && cache.get(&id(3)).is_some());
        cache.evict(&id(3));
        assert!(cache.get(&id(3)).is_none());
        let off = OrderCache::new(0);
        off.put(id(1), OrderState::default());
        assert!(off.is_empty());
    }
}
