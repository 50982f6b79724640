//! Which aggregates have events waiting and which are being applied. An aggregate (a subject)
//! is in at most one batch at a time, so its events are applied in order; batches take the
//! aggregates that became ready first. An aggregate whose batch failed beside others is applied
//! by itself until it succeeds, so one broken aggregate cannot keep failing everyone's batch.

use std::collections::{HashMap, HashSet, VecDeque};

/// One aggregate's share of a batch: its key and its events, in order.
pub(super) type Part<T> = (String, Vec<T>);

#[derive(Debug)]
pub(super) struct Lanes<T> {
    waiting: HashMap<String, VecDeque<T>>,
    /// Aggregates with events waiting and none being applied, oldest first.
    ready: VecDeque<String>,
    /// Aggregates in a batch being applied, or waiting to be retried.
    busy: HashSet<String>,
    /// Aggregates to be applied by themselves.
    alone: HashSet<String>,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Lanes {
            waiting: HashMap::new(),
            ready: VecDeque::new(),
            busy: HashSet::new(),
            alone: HashSet::new(),
        }
    }
}

impl<T> Lanes<T> {
    /// Queues `item` on `key`; `true` when that made `key` ready.
    pub(super) fn add(&mut self, key: String, item: T) -> bool {
        let queue = self.waiting.entry(key.clone()).or_default();
        queue.push_back(item);
        let ready = queue.len() == 1 && !self.busy.contains(&key);
        if ready {
            self.ready.push_back(key);
        }
        ready
    }

    /// The next batch: up to `max` events of the aggregates ready first, which are busy until
    /// [`Lanes::done`] or [`Lanes::put_back`]. An aggregate to be applied alone is a batch by
    /// itself. Empty when nothing is ready.
    pub(super) fn take(&mut self, max: usize) -> Vec<Part<T>> {
        let mut parts: Vec<Part<T>> = Vec::new();
        let mut count = 0;
        while count < max {
            let Some(key) = self.ready.pop_front() else { break };
            let solo = self.alone.contains(&key);
            if solo && !parts.is_empty() {
                self.ready.push_front(key);
                break;
            }
            let Some(queue) = self.waiting.get_mut(&key) else {
                continue;
            };
            let items: Vec<T> = queue.drain(..(max - count).min(queue.len())).collect();
            if queue.is_empty() {
                self.waiting.remove(&key);
            }
            count += items.len();
            self.busy.insert(key.clone());
            parts.push((key, items));
            if solo {
                break;
            }
        }
        parts
    }

    pub(super) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// `key`'s batch is applied; `true` when more of its events wait (it is ready again).
    pub(super) fn done(&mut self, key: &str) -> bool {
        self.busy.remove(key);
        self.alone.remove(key);
        let more = self.waiting.get(key).is_some_and(|q| !q.is_empty());
        if more {
            self.ready.push_back(key.to_string());
        }
        more
    }

    /// `items` (the oldest of `key`'s events, in order) were not applied: they wait first again,
    /// and `key` is the first ready; `alone` makes it a batch by itself from now on.
    pub(super) fn put_back(&mut self, key: String, items: Vec<T>, alone: bool) {
        let queue = self.waiting.entry(key.clone()).or_default();
        for item in items.into_iter().rev() {
            queue.push_front(item);
        }
        self.busy.remove(&key);
        if alone {
            self.alone.insert(key.clone());
        }
        if queue.is_empty() {
            self.waiting.remove(&key);
        } else {
            self.ready.push_front(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Lanes;

    fn lanes(events: &[(&str, u32)]) -> Lanes<u32> {
        let mut lanes = Lanes::default();
        for (key, n) in events {
            lanes.add(key.to_string(), *n);
        }
        lanes
    }

    fn keys(parts: &[(String, Vec<u32>)]) -> Vec<(&str, Vec<u32>)> {
        parts.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
    }

    #[test]
    fn a_batch_takes_every_ready_aggregate_in_the_order_they_became_ready() {
        let mut lanes = lanes(&[("b", 1), ("a", 2), ("b", 3), ("c", 4)]);
        let batch = lanes.take(10);
        assert_eq!(keys(&batch), [("b", vec![1, 3]), ("a", vec![2]), ("c", vec![4])]);
        assert!(lanes.take(10).is_empty(), "nothing else is ready");
    }

    #[test]
    fn an_aggregate_in_a_batch_is_not_in_another_until_done() {
        let mut lanes = lanes(&[("a", 1), ("b", 2)]);
        let first = lanes.take(10);
        assert_eq!(first.len(), 2);
        assert!(!lanes.add("a".into(), 3), "a is busy: not ready");
        assert!(lanes.add("c".into(), 4));
        assert_eq!(keys(&lanes.take(10)), [("c", vec![4])], "a waits for its batch");
        assert!(lanes.done("a"), "a has more");
        assert!(!lanes.done("b"));
        assert_eq!(keys(&lanes.take(10)), [("a", vec![3])]);
    }

    #[test]
    fn a_batch_stops_at_its_size_and_leaves_the_rest_of_an_aggregate_for_later() {
        let mut lanes = lanes(&[("a", 1), ("a", 2), ("a", 3), ("b", 4)]);
        assert_eq!(keys(&lanes.take(2)), [("a", vec![1, 2])]);
        assert_eq!(
            keys(&lanes.take(2)),
            [("b", vec![4])],
            "a's rest waits for its batch"
        );
        lanes.done("a");
        assert_eq!(keys(&lanes.take(2)), [("a", vec![3])]);
    }

    #[test]
    fn what_is_put_back_comes_first_and_an_aggregate_put_back_alone_is_a_batch_by_itself() {
        let mut lanes = lanes(&[("a", 1), ("b", 2), ("c", 3)]);
        let batch = lanes.take(10);
        lanes.add("a".into(), 4);
        for (key, items) in batch {
            lanes.put_back(key, items, true);
        }
        assert_eq!(keys(&lanes.take(10)), [("c", vec![3])]);
        assert_eq!(keys(&lanes.take(10)), [("b", vec![2])]);
        assert_eq!(
            keys(&lanes.take(10)),
            [("a", vec![1, 4])],
            "put back before what came after"
        );
        lanes.done("a");
        lanes.add("a".into(), 5);
        lanes.add("d".into(), 6);
        assert_eq!(
            keys(&lanes.take(10)),
            [("a", vec![5]), ("d", vec![6])],
            "once applied, a joins batches again"
        );
    }
}
