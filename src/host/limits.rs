//! A process-wide budget of invocation bytes in flight (`AUDIT_MAX_BYTES_IN_FLIGHT`).
//!
//! Memory grows with the invocations the host sends at once: each holds its body, and what
//! is made from it, until it is answered. Twenty-four concurrent invocations of 141 MB each
//! reached 3.4 GiB, over the 2 GB instance the template deploys. Each invocation reserves
//! the bytes of its body as they arrive and keeps them until it is answered; when the budget
//! is spent, reading waits (TCP holds the host back) until another invocation is answered.
//! The oldest invocation in flight may always read on, even past the budget, so one body
//! larger than the budget still passes and two invocations can never wait on each other:
//! the bound is the budget plus one body (`AUDIT_MAX_BODY_BYTES`). A body still waiting
//! after `AUDIT_BODY_READ_TIMEOUT` is answered 500 and retried by the host.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Bytes of invocation bodies the process holds at once, shared by every invocation.
#[derive(Debug)]
pub struct BodyBudget {
    limit: usize,
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug, Default)]
struct State {
    used: usize,
    next_ticket: u64,
    /// Tickets of the invocations holding a reservation, oldest first.
    holders: BTreeSet<u64>,
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            state: Mutex::new(State::default()),
            freed: Notify::new(),
        })
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.lock().used
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits one invocation, in order of arrival; it reserves nothing yet.
    pub fn admit(self: &Arc<Self>) -> Reservation {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.holders.insert(ticket);
        Reservation {
            budget: self.clone(),
            ticket,
            held: 0,
            waited: false,
        }
    }
}

/// One invocation's share of the budget, given back when dropped (when it is answered).
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    ticket: u64,
    held: usize,
    waited: bool,
}

impl Reservation {
    /// Reserves `bytes` more, waiting while the budget is spent unless this is the oldest
    /// invocation in flight.
    pub async fn grow(&mut self, bytes: usize) {
        loop {
            // Created before the check, so a release between the two is not missed.
            let freed = self.budget.freed.notified();
            {
                let mut state = self.budget.lock();
                let oldest = state.holders.first() == Some(&self.ticket);
                if oldest || state.used.saturating_add(bytes) <= self.budget.limit {
                    state.used = state.used.saturating_add(bytes);
                    self.held = self.held.saturating_add(bytes);
                    return;
                }
            }
            self.waited = true;
            freed.await;
        }
    }

    /// Bytes this invocation holds.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether it ever waited for the budget.
    pub fn waited(&self) -> bool {
        self.waited
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        {
            let mut state = self.budget.lock();
            state.used = state.used.saturating_sub(self.held);
            state.holders.remove(&self.ticket);
        }
        self.budget.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_second_invocation_waits_until_the_first_is_answered() {
        let budget = BodyBudget::new(100);
        let mut first = budget.admit();
        first.grow(80).await;
        let mut second = budget.admit();
        second.grow(20).await;
        let waiting = tokio::spawn(async move {
            second.grow(10).await;
            second
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "over the budget without waiting");
        // The oldest reads on past the budget.
        first.grow(500).await;
        assert_eq!(budget.used(), 600);
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(second.waited());
        assert_eq!(second.held(), 30);
        assert_eq!(budget.used(), 30);
        drop(second);
        assert_eq!(budget.used(), 0);
    }

    /// The oldest waiting invocation becomes the oldest in flight when the first leaves, so
    /// it reads on even past the budget: no two invocations wait on each other.
    #[tokio::test]
    async fn the_next_oldest_inherits_the_right_to_read_on() {
        let budget = BodyBudget::new(10);
        let mut a = budget.admit();
        a.grow(10).await;
        let mut b = budget.admit();
        let b_task = tokio::spawn(async move {
            b.grow(50).await;
            b
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!b_task.is_finished());
        drop(a);
        let b = tokio::time::timeout(Duration::from_secs(2), b_task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.held(), 50);
    }
}
