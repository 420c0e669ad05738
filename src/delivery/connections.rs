//! A process-wide cap on webhook connections, sized from the descriptor limit.
//!
//! Every route has its own HTTP client and connection pool. With hundreds of routes, each
//! delivering a few batches at once and keeping its connections alive, the process ran out
//! of file descriptors (`Too many open files`) on every try, and the same routes failed
//! again on every retry. Two bounds keep the total under the limit:
//!
//! - **Deliveries at once**: a delivery (one batch, retries included) holds a permit while it
//!   runs; the others wait their turn until the invocation's deadline. At most
//!   [`ConnectionBudget::deliveries`] connections are in use.
//! - **Idle connections kept**: each client claims up to [`IDLE_PER_CLIENT`] kept-alive
//!   connections from a shared allowance when it is built, and never more than a quarter of
//!   what is left unless that is under [`MIN_IDLE_PER_CLIENT`], so the routes built later
//!   still get some; a client that finds the allowance spent keeps none (it opens a
//!   connection per POST and closes it after).
//!
//! Both come from `RLIMIT_NOFILE` (the soft limit) less [`RESERVED_DESCRIPTORS`] for the
//! listener, the host's connections, standard streams and files; half for deliveries, half
//! for idle connections, each at most [`MAX_DELIVERIES`].

use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors left for everything but webhook connections.
pub const RESERVED_DESCRIPTORS: u64 = 64;
/// Most deliveries at once, and most idle connections kept, however high the limit.
pub const MAX_DELIVERIES: usize = 1024;
/// Most kept-alive connections one client claims: the default `AUDIT_WEBHOOK_CONCURRENCY` (4)
/// for each of eight invocations at once (one per Event Hub partition the instance holds).
/// A pool that keeps fewer closes the rest after each burst of POSTs and opens them again
/// for the next: a TCP handshake (and a TLS one) per POST for the receiver and for us.
pub const IDLE_PER_CLIENT: usize = 32;
/// What a client claims at least while the allowance lasts, however many came before it.
pub const MIN_IDLE_PER_CLIENT: usize = 4;

/// The process's connection budget.
#[derive(Debug)]
pub struct ConnectionBudget {
    deliveries: Arc<Semaphore>,
    limit: usize,
    idle_left: Mutex<usize>,
}

impl ConnectionBudget {
    /// A budget for a process allowed `descriptors` open files.
    pub fn for_descriptors(descriptors: u64) -> Self {
        let usable = descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(2);
        let half = usize::try_from(usable / 2)
            .unwrap_or(usize::MAX)
            .clamp(1, MAX_DELIVERIES);
        Self {
            deliveries: Arc::new(Semaphore::new(half)),
            limit: half,
            idle_left: Mutex::new(half),
        }
    }

    /// The process-wide budget, sized on first use from `RLIMIT_NOFILE`.
    pub fn global() -> &'static Self {
        static BUDGET: OnceLock<ConnectionBudget> = OnceLock::new();
        BUDGET.get_or_init(|| {
            let (soft, _) =
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                    .unwrap_or((u64::MAX, u64::MAX));
            Self::for_descriptors(soft)
        })
    }

    /// Most deliveries at once.
    pub fn deliveries(&self) -> usize {
        self.limit
    }

    /// Waits for a delivery's turn; the permit is held until dropped (`None` only if the
    /// semaphore were closed, which it never is).
    pub async fn delivery(&self) -> Option<OwnedSemaphorePermit> {
        self.deliveries.clone().acquire_owned().await.ok()
    }

    /// Claims up to [`IDLE_PER_CLIENT`] kept-alive connections for one client, at most a
    /// quarter of what is left (at least [`MIN_IDLE_PER_CLIENT`] while it lasts); returned to
    /// the allowance when the claim is dropped.
    pub fn claim_idle(&'static self) -> IdleClaim {
        let mut left = self.idle_left.lock().unwrap_or_else(|e| e.into_inner());
        let share = (*left / 4).clamp(MIN_IDLE_PER_CLIENT, IDLE_PER_CLIENT);
        let taken = (*left).min(share);
        *left -= taken;
        IdleClaim {
            budget: self,
            taken,
        }
    }
}

/// Kept-alive connections one client may hold.
#[derive(Debug)]
pub struct IdleClaim {
    budget: &'static ConnectionBudget,
    taken: usize,
}

impl IdleClaim {
    /// How many (0: the client keeps no connection alive).
    pub fn connections(&self) -> usize {
        self.taken
    }
}

impl Drop for IdleClaim {
    fn drop(&mut self) {
        let mut left = self
            .budget
            .idle_left
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *left += self.taken;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_from_the_descriptor_limit() {
        let budget = ConnectionBudget::for_descriptors(256);
        assert_eq!(budget.deliveries(), 96);
        assert_eq!(ConnectionBudget::for_descriptors(10).deliveries(), 1);
        assert_eq!(
            ConnectionBudget::for_descriptors(u64::MAX).deliveries(),
            MAX_DELIVERIES
        );
    }

    #[test]
    fn idle_claims_stop_at_the_allowance_and_come_back() {
        let budget: &'static ConnectionBudget =
            Box::leak(Box::new(ConnectionBudget::for_descriptors(64 + 20)));
        let claims: Vec<IdleClaim> = (0..5).map(|_| budget.claim_idle()).collect();
        let taken: Vec<usize> = claims.iter().map(IdleClaim::connections).collect();
        assert_eq!(taken, [4, 4, 2, 0, 0]);
        drop(claims);
        assert_eq!(budget.claim_idle().connections(), 4);
    }

    /// With room, a client keeps enough for eight invocations at the default concurrency;
    /// as the allowance shrinks, later clients get a quarter of what is left, then the least.
    #[test]
    fn idle_claims_shrink_as_the_allowance_does() {
        let budget: &'static ConnectionBudget =
            Box::leak(Box::new(ConnectionBudget::for_descriptors(64 + 2 * 200)));
        let claims: Vec<IdleClaim> = (0..14).map(|_| budget.claim_idle()).collect();
        let taken: Vec<usize> = claims.iter().map(IdleClaim::connections).collect();
        assert_eq!(taken, [32, 32, 32, 26, 19, 14, 11, 8, 6, 5, 4, 4, 4, 3]);
    }
}
