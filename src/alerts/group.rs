//! No storm: per rule and notifier, one card per grouping window.
//!
//! The first matches of a rule for a notifier go out at once, all of an invocation's in one
//! card. Matches within `grouping.window` after that card are held and sent as one card when
//! the window ends, so a `kubectl delete namespace` of 500 objects sends one or two messages,
//! not 500. The state is per process: each instance of the Function App groups on its own.
//!
//! The same Event (`auditID`, stage) is alerted once per rule and notifier, even when the host
//! retries its invocation: the last [`REMEMBERED`] are remembered once sent or held.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::Hit;

/// Events remembered as alerted, to skip them when an invocation is retried.
pub const REMEMBERED: usize = 20_000;
/// Held Events kept per rule and notifier; more are counted on the card only.
pub const MAX_HELD: usize = 5_000;

/// A rule (index) and a notifier (index).
pub type Key = (usize, usize);

#[derive(Debug)]
struct KeyState {
    /// When the last card went out, if one did.
    last: Option<Instant>,
    held: Vec<Hit>,
    uncounted: usize,
    /// Whether a send of the held Events is scheduled.
    scheduled: bool,
}

/// What to do with matches.
#[derive(Debug)]
pub enum Admit {
    /// Send these now, in one card.
    Now(Vec<Hit>),
    /// Held for the card at the end of the window; `Some(at)` when the caller must schedule
    /// that card (the first held matches of this window).
    Held(Option<Instant>),
    /// Every match was alerted before.
    Seen,
}

/// The grouping state of one process.
#[derive(Debug)]
pub struct Grouper {
    window: Duration,
    keys: HashMap<Key, KeyState>,
    seen: HashSet<(Key, String)>,
    order: VecDeque<(Key, String)>,
}

impl Grouper {
    /// Groups within `window` (zero: every invocation's matches go out at once).
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            keys: HashMap::new(),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    fn remember(&mut self, key: Key, id: String) -> bool {
        if !self.seen.insert((key, id.clone())) {
            return false;
        }
        self.order.push_back((key, id));
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// Forgets Events whose card could not be sent: a retry of their invocation may alert
    /// them again.
    pub fn forget(&mut self, key: Key, hits: &[Hit]) {
        for hit in hits {
            self.seen.remove(&(key, hit.identity()));
        }
    }

    /// Admits an invocation's matches of one rule for one notifier at `now`.
    pub fn admit(&mut self, key: Key, hits: Vec<Hit>, now: Instant) -> Admit {
        let hits: Vec<Hit> = hits
            .into_iter()
            .filter(|h| {
                let id = h.identity();
                id.is_empty() || self.remember(key, id)
            })
            .collect();
        if hits.is_empty() {
            return Admit::Seen;
        }
        let window = self.window;
        let state = self.keys.entry(key).or_insert_with(|| KeyState {
            last: None,
            held: Vec::new(),
            uncounted: 0,
            scheduled: false,
        });
        let open = !state.held.is_empty() || state.scheduled;
        if !open && state.last.is_none_or(|last| last + window <= now) {
            state.last = Some(now);
            return Admit::Now(hits);
        }
        for hit in hits {
            if state.held.len() < MAX_HELD {
                state.held.push(hit);
            } else {
                state.uncounted += 1;
            }
        }
        if state.scheduled {
            return Admit::Held(None);
        }
        state.scheduled = true;
        let at = state.last.map_or(now, |last| (last + window).max(now));
        Admit::Held(Some(at))
    }

    /// Takes the held matches of `key` for their card, at `now`: the Events kept and how many
    /// more were only counted.
    pub fn take_held(&mut self, key: Key, now: Instant) -> (Vec<Hit>, usize) {
        match self.keys.get_mut(&key) {
            Some(state) => {
                state.last = Some(now);
                state.scheduled = false;
                (
                    std::mem::take(&mut state.held),
                    std::mem::take(&mut state.uncounted),
                )
            }
            None => (Vec::new(), 0),
        }
    }
}
