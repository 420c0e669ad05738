//! What delivery learned about an invocation that failed, kept for the host's next try of the
//! same invocation: which Events each route already delivered, which it isolated as poison,
//! and how often an Event failed alone right after the receiver answered. The host resends
//! exactly the same events (same partition, same sequence numbers) until the invocation
//! succeeds, so the next try skips what is known and goes straight to what is left. Bounded:
//! a few invocations, oldest forgotten first; losing an entry only costs duplicates and a new
//! isolation, never an Event.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::Mutex;

/// Invocations remembered at once (a handler serves a few partitions; each keeps at most the
/// invocation it is retrying).
pub const REMEMBERED_INVOCATIONS: usize = 64;

/// Identifies one invocation across the host's retries: partition, first and last sequence
/// numbers and their count (`Metadata.PartitionContext`, `SequenceNumberArray`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InvocationKey {
    /// `PartitionContext.PartitionId`.
    pub partition: String,
    /// The first sequence number.
    pub first: i64,
    /// The last sequence number.
    pub last: i64,
    /// How many events there were.
    pub count: usize,
}

impl InvocationKey {
    /// The key of an invocation, when the host said where its events came from.
    pub fn new(partition: Option<&str>, sequence_numbers: &[i64]) -> Option<Self> {
        let partition = partition?.to_string();
        let (first, last) = (*sequence_numbers.first()?, *sequence_numbers.last()?);
        Some(Self {
            partition,
            first,
            last,
            count: sequence_numbers.len(),
        })
    }
}

/// What one route learned: Events (indices into the route's Events) delivered, and Events
/// isolated as poison with the reason and status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteLearned {
    /// How many Events the route had (a different count means different input: ignored).
    pub events: usize,
    /// Indices delivered.
    pub delivered: Indices,
    /// Events isolated as poison, in the order they were isolated.
    pub poison: Vec<Poisoned>,
    /// Per Event (index), how many times it failed alone right after the receiver answered
    /// (a crash and restart of the receiver spans tries: the count is what isolates it).
    pub failed_alone: BTreeMap<usize, u32>,
    /// The last batch (`start..end`) that failed right after the receiver answered while
    /// Events were sent one POST at a time: the next try sends it last, in pieces, the same way.
    pub failing_after_answer: Option<(usize, usize)>,
}

impl RouteLearned {
    /// Whether the Event at `index` is settled: delivered, or isolated as poison.
    pub fn knows(&self, index: usize) -> bool {
        self.delivered.contains(&index) || self.poison.iter().any(|p| p.index == index)
    }

    /// How many Events are settled (delivered or isolated as poison).
    pub fn known(&self) -> usize {
        self.delivered.len() + self.poison.len()
    }
}

/// A set of indices held as sorted, disjoint runs: a route's delivered Events are a few long
/// runs (its batches), so thousands of indices take a few entries and adding a batch is one
/// merge, not an insert per Event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indices {
    /// Sorted, non-empty, neither overlapping nor touching.
    runs: Vec<Range<usize>>,
}

impl Indices {
    /// Adds every index of `range`.
    pub fn extend(&mut self, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        // The runs that overlap or touch `range` are merged with it.
        let first = self.runs.partition_point(|r| r.end < range.start);
        let after = self.runs.partition_point(|r| r.start <= range.end);
        let merged = match self.runs.get(first..after) {
            Some([head, .., tail]) | Some([head @ tail]) => {
                head.start.min(range.start)..tail.end.max(range.end)
            }
            _ => range,
        };
        self.runs.splice(first..after, [merged]);
    }

    /// Adds `index`.
    pub fn insert(&mut self, index: usize) {
        self.extend(index..index + 1);
    }

    /// Whether `index` is in the set.
    pub fn contains(&self, index: &usize) -> bool {
        let at = self.runs.partition_point(|r| r.end <= *index);
        self.runs.get(at).is_some_and(|r| r.contains(index))
    }

    /// How many indices.
    pub fn len(&self) -> usize {
        self.runs.iter().map(ExactSizeIterator::len).sum()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The least index.
    pub fn first(&self) -> Option<usize> {
        self.runs.first().map(|r| r.start)
    }
}

/// An Event a route isolated as poison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poisoned {
    /// Its index among the route's Events.
    pub index: usize,
    /// Why: the receiver's answer, or that it failed alone while others passed.
    pub reason: String,
    /// The receiver's HTTP status, when it refused the Event with one.
    pub status: Option<u16>,
}

#[derive(Debug)]
struct Entry {
    key: InvocationKey,
    /// By the route's place in the routes list: its identity, whatever its name.
    routes: Vec<(usize, RouteLearned)>,
}

/// The bounded cache, shared by all invocations of the process.
#[derive(Debug, Default)]
pub struct Learned {
    entries: Mutex<VecDeque<Entry>>,
}

impl Learned {
    /// What the route at `route` (its place in the routes list, which identifies it whatever
    /// its name) learned in earlier tries of `key`, if its Event count matches.
    pub fn get(&self, key: &InvocationKey, route: usize, events: usize) -> RouteLearned {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .find(|e| &e.key == key)
            .and_then(|e| e.routes.iter().find(|(r, _)| *r == route))
            .map(|(_, learned)| learned.clone())
            .filter(|l| l.events == events)
            .unwrap_or_default()
    }

    /// Records what the route at `route` knows now about `key`, replacing what it knew.
    pub fn put(&self, key: &InvocationKey, route: usize, learned: RouteLearned) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let position = entries.iter().position(|e| &e.key == key);
        let entry = match position {
            Some(i) => &mut entries[i],
            None => {
                if entries.len() >= REMEMBERED_INVOCATIONS {
                    entries.pop_front();
                }
                entries.push_back(Entry {
                    key: key.clone(),
                    routes: Vec::new(),
                });
                let last = entries.len() - 1;
                &mut entries[last]
            }
        };
        match entry.routes.iter_mut().find(|(r, _)| *r == route) {
            Some((_, old)) => *old = learned,
            None => entry.routes.push((route, learned)),
        }
    }

    /// Forgets `key`: the invocation succeeded and will not be retried.
    pub fn forget(&self, key: &InvocationKey) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| &e.key != key);
    }

    /// Invocations remembered now.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_route_and_stays_bounded() {
        let cache = Learned::default();
        let key = InvocationKey::new(Some("3"), &[10, 11, 12]).unwrap();
        let mut learned = RouteLearned {
            events: 5,
            ..RouteLearned::default()
        };
        learned.delivered.extend(0..2);
        cache.put(&key, 0, learned.clone());
        assert_eq!(cache.get(&key, 0, 5), learned);
        assert_eq!(cache.get(&key, 0, 6), RouteLearned::default());
        assert_eq!(cache.get(&key, 1, 5), RouteLearned::default());
        for p in 0..(REMEMBERED_INVOCATIONS + 10) {
            let k = InvocationKey::new(Some(&p.to_string()), &[1]).unwrap();
            cache.put(&k, 0, RouteLearned::default());
        }
        assert_eq!(cache.len(), REMEMBERED_INVOCATIONS);
        assert_eq!(cache.get(&key, 0, 5), RouteLearned::default());
        cache.forget(&InvocationKey::new(Some("70"), &[1]).unwrap());
        assert_eq!(cache.len(), REMEMBERED_INVOCATIONS - 1);
        assert!(InvocationKey::new(None, &[1]).is_none());
        assert!(InvocationKey::new(Some("1"), &[]).is_none());
    }

    #[test]
    fn indices_merge_runs_as_a_set_would() {
        let mut indices = Indices::default();
        let mut set = std::collections::BTreeSet::new();
        // Batches delivered out of order, single Events, overlaps, touching runs, empties.
        let adds = [
            10..20,
            30..40,
            0..5,
            20..30,
            5..6,
            50..50,
            45..47,
            44..48,
            7..8,
            6..7,
            100..101,
            99..102,
            0..3,
        ];
        for range in adds {
            indices.extend(range.clone());
            set.extend(range);
            assert_eq!(indices.len(), set.len());
            assert_eq!(indices.first(), set.first().copied());
            for i in 0..110 {
                assert_eq!(indices.contains(&i), set.contains(&i), "index {i}");
            }
            assert!(indices.runs.windows(2).all(|w| w[0].end < w[1].start));
        }
        assert_eq!(indices.runs, vec![0..8, 10..40, 44..48, 99..102]);
        indices.insert(9);
        indices.insert(8);
        assert_eq!(indices.runs, vec![0..40, 44..48, 99..102]);
        assert!(Indices::default().is_empty());
    }
}
