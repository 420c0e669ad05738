//! Request buffers kept between invocations, up to a fixed number of bytes, so the next
//! request is written into pages the process already has instead of fresh ones the kernel
//! must fault in and zero one by one.
//!
//! Why our own pool and not the allocator's: glibc's mmap threshold follows the largest block
//! freed (up to 32 MiB), so once one request buffer is freed, every later one of up to
//! 32 MiB comes from a per-thread arena and stays there: sixteen concurrent 29 MiB
//! invocations then held 750 MiB when idle (`docs/performance.md`). A pool's buffer is
//! allocated at [`POOLED_CAPACITY`], above that threshold's ceiling: glibc maps it on its own
//! (unless a free block that large already lies in an arena, which our allocations do not
//! leave), so freeing it unmaps it without moving the threshold, and only the pages written
//! to are memory. The pool counts those pages once each request is read ([`Loan::settle`]),
//! keeps at most its bound of them, and unmaps a buffer no invocation has needed for
//! [`KEPT_FOR`] (checked every half of it).

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// The capacity of every buffer a pool lends (bytes): 33 MiB, over glibc's largest mmap
/// threshold (`DEFAULT_MMAP_THRESHOLD_MAX`, 32 MiB on 64-bit). Address space, not memory:
/// only the pages a body is written to are. A larger body grows its buffer out of the pool.
pub const POOLED_CAPACITY: usize = 33 * 1024 * 1024;

/// The unit in which a buffer's memory is counted (bytes): 2 MiB, a transparent huge page on
/// x86-64, which the kernel may map whole on the first write into it. A buffer written to at
/// all counts at least this much, so the pool's bound holds on any kernel setting, and it
/// keeps at most `most / PAGES_OF` buffers however small the bodies.
pub const PAGES_OF: usize = 2 * 1024 * 1024;

/// How long a kept buffer waits for an invocation before it is unmapped.
pub const KEPT_FOR: Duration = Duration::from_secs(10);

/// Buffers lent to invocations and kept for the next ones, at most `most` bytes of them
/// written to (lent and kept together).
#[derive(Debug)]
pub struct BodyPool {
    most: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The memory of every buffer lent or kept (bytes, see [`resident`]).
    held: usize,
    /// Buffers waiting for an invocation, the latest back last.
    kept: Vec<Kept>,
}

#[derive(Debug)]
struct Kept {
    buffer: Vec<u8>,
    /// Its memory: the most bytes ever written to it, in [`PAGES_OF`] units.
    resident: usize,
    since: Instant,
}

/// A lent buffer's place in its [`BodyPool`]: the bytes it counts for until the buffer comes
/// back ([`Loan::give_back`]) or the loan is dropped (the buffer is then an ordinary
/// allocation, freed with its owner).
#[derive(Debug)]
pub struct Loan {
    pool: Arc<BodyPool>,
    /// Bytes counted in the pool's `held` for this buffer.
    charged: usize,
    /// The most bytes written to the buffer, this loan and before.
    written: usize,
    /// Where the buffer's bytes start, once settled ([`Loan::settle`]); 0 before.
    address: usize,
}

impl BodyPool {
    /// A pool holding at most `most` bytes of buffers. `0` keeps none.
    pub fn new(most: usize) -> Arc<Self> {
        Arc::new(Self {
            most,
            state: Mutex::new(State::default()),
        })
    }

    /// The most bytes the pool holds.
    pub fn most(&self) -> usize {
        self.most
    }

    /// The memory of the buffers lent or kept now (bytes, in [`PAGES_OF`] units).
    pub fn held(&self) -> usize {
        self.lock().held
    }

    /// Buffers kept now, waiting for an invocation.
    pub fn kept(&self) -> usize {
        self.lock().kept.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty buffer for a body of about `expected` bytes, and its loan when it is the
    /// pool's: the buffer kept last, else a new one if `expected` more bytes fit in the
    /// pool. Otherwise an ordinary buffer with room for `expected` bytes, and no loan.
    pub fn lend(self: &Arc<Self>, expected: usize) -> (Vec<u8>, Option<Loan>) {
        if expected > POOLED_CAPACITY {
            return (Vec::with_capacity(expected), None);
        }
        let mut state = self.lock();
        if let Some(kept) = state.kept.pop() {
            drop(state);
            let loan = self.loan(kept.resident, kept.resident);
            return (kept.buffer, Some(loan));
        }
        let charged = resident(expected);
        if state.held + charged > self.most {
            drop(state);
            return (Vec::with_capacity(expected), None);
        }
        state.held += charged;
        drop(state);
        (
            Vec::with_capacity(POOLED_CAPACITY),
            Some(self.loan(charged, 0)),
        )
    }

    fn loan(self: &Arc<Self>, charged: usize, written: usize) -> Loan {
        Loan {
            pool: self.clone(),
            charged,
            written,
            address: 0,
        }
    }

    /// Unmaps, now, every kept buffer that has waited `KEPT_FOR` or longer by `now`.
    pub fn give_back_idle(&self, now: Instant) {
        let mut state = self.lock();
        let waited = |k: &Kept| now.saturating_duration_since(k.since) >= KEPT_FOR;
        let idle = state.kept.iter().take_while(|k| waited(k)).count();
        let idle: Vec<Kept> = state.kept.drain(..idle).collect();
        state.held -= idle.iter().map(|k| k.resident).sum::<usize>();
        drop(state);
        drop(idle);
    }

    /// Unmaps the idle buffers every `KEPT_FOR / 2`, for as long as the pool is in use.
    /// Needs a Tokio runtime; without one, nothing is unmapped for being idle.
    pub fn give_back_idle_in_background(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool: Weak<Self> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(KEPT_FOR / 2);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.give_back_idle(Instant::now());
            }
        });
    }
}

impl Loan {
    /// The loan of `buffer` once the request is read into it: charged now for what was
    /// written, not for what was expected. `None` when that no longer fits in the pool (the
    /// buffer is then an ordinary allocation, given back as its bodies are converted) or the
    /// buffer has grown out of [`POOLED_CAPACITY`].
    pub fn settle(mut self, buffer: &[u8], capacity: usize) -> Option<Self> {
        if capacity != POOLED_CAPACITY {
            return None;
        }
        self.written = self.written.max(buffer.len());
        self.address = buffer.as_ptr() as usize;
        let resident = resident(self.written);
        let pool = self.pool.clone();
        let mut state = pool.lock();
        if resident > self.charged {
            if state.held + (resident - self.charged) > pool.most {
                drop(state);
                return None;
            }
            state.held += resident - self.charged;
            self.charged = resident;
        }
        drop(state);
        Some(self)
    }

    /// Whether `buffer` is the buffer this loan was settled for (not a copy of its bodies).
    pub fn lends(&self, buffer: &[u8]) -> bool {
        self.address != 0 && buffer.as_ptr() as usize == self.address
    }

    /// Brings `buffer` back to the pool, emptied, to be lent again; it is freed instead when
    /// it has grown out of [`POOLED_CAPACITY`] or its pages no longer fit in the pool.
    pub fn give_back(mut self, mut buffer: Vec<u8>) {
        buffer.clear();
        let pool = self.pool.clone();
        let resident = resident(self.written);
        let mut state = pool.lock();
        state.held -= std::mem::take(&mut self.charged);
        if buffer.capacity() == POOLED_CAPACITY && state.held + resident <= pool.most {
            state.held += resident;
            state.kept.push(Kept {
                buffer,
                resident,
                since: Instant::now(),
            });
            return;
        }
        drop(state);
        drop(buffer);
    }
}

/// The memory of a buffer `written` bytes of which were written to, in [`PAGES_OF`] units.
fn resident(written: usize) -> usize {
    written.max(1).div_ceil(PAGES_OF) * PAGES_OF
}

impl Drop for Loan {
    fn drop(&mut self) {
        if self.charged > 0 {
            self.pool.lock().held -= self.charged;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    fn lend_and_write(pool: &Arc<BodyPool>, len: usize) -> (Vec<u8>, Option<Loan>) {
        let (mut buffer, loan) = pool.lend(len);
        buffer.resize(len, b'x');
        let loan = loan.and_then(|loan| loan.settle(&buffer, buffer.capacity()));
        (buffer, loan)
    }

    #[test]
    fn buffers_come_back_and_are_lent_again_within_the_bound() {
        let pool = BodyPool::new(20 * MIB);
        let (first, loan) = lend_and_write(&pool, 8 * MIB);
        assert_eq!(first.capacity(), POOLED_CAPACITY);
        let address = first.as_ptr();
        loan.expect("the pool has room").give_back(first);
        assert_eq!((pool.held(), pool.kept()), (8 * MIB, 1));

        // The same buffer, emptied, for the next body; its 8 MiB stay counted.
        let (again, loan) = pool.lend(5 * MIB);
        assert!(again.is_empty() && again.as_ptr() == address);
        let loan = loan.expect("kept");
        assert_eq!((pool.held(), pool.kept()), (8 * MIB, 0));

        // 8 + 10 fits; 8 + 10 + 10 does not: that one is an ordinary buffer.
        let (_, second) = lend_and_write(&pool, 10 * MIB);
        assert!(second.is_some());
        let (third, none) = pool.lend(10 * MIB);
        assert!(none.is_none() && third.capacity() == 10 * MIB);
        assert_eq!(pool.held(), 18 * MIB);

        // A loan dropped without its buffer frees its place.
        drop(second);
        assert_eq!(pool.held(), 8 * MIB);
        drop(loan);
        assert_eq!(pool.held(), 0);
    }

    #[test]
    fn what_does_not_fit_is_freed() {
        let pool = BodyPool::new(40 * MIB);
        let (huge, loan) = pool.lend(POOLED_CAPACITY + 1);
        assert!(loan.is_none() && huge.capacity() > POOLED_CAPACITY);

        // A buffer grown past its capacity (a body larger than expected) is not kept.
        let (mut grown, loan) = lend_and_write(&pool, MIB);
        grown.resize(POOLED_CAPACITY + 1, 0);
        loan.expect("room").give_back(grown);
        assert_eq!((pool.held(), pool.kept()), (0, 0));

        // A body larger than expected is charged for what was written once it is read: two
        // of 25 MiB (26 MiB in huge pages) do not fit in 40 MiB, so the second loan ends and
        // that buffer is an ordinary one.
        let (a, loan_a) = lend_and_write(&pool, 25 * MIB);
        let (mut b, loan_b) = pool.lend(0);
        let loan_b = loan_b.expect("room for a body of unknown size");
        assert_eq!(pool.held(), 28 * MIB);
        b.resize(25 * MIB, b'x');
        assert!(loan_b.settle(&b, b.capacity()).is_none());
        assert_eq!(pool.held(), 26 * MIB);
        let loan_a = loan_a.expect("room");
        assert!(loan_a.lends(&a) && !loan_a.lends(&b));
        loan_a.give_back(a);
        assert_eq!((pool.held(), pool.kept()), (26 * MIB, 1));
    }

    #[test]
    fn small_bodies_count_whole_huge_pages_so_few_buffers_are_kept() {
        let pool = BodyPool::new(8 * MIB);
        let lent: Vec<_> = (0..5).map(|_| lend_and_write(&pool, 100)).collect();
        assert_eq!(lent.iter().filter(|(_, loan)| loan.is_some()).count(), 4);
        assert_eq!(pool.held(), 8 * MIB);
        for (buffer, loan) in lent {
            if let Some(loan) = loan {
                loan.give_back(buffer);
            }
        }
        assert_eq!((pool.held(), pool.kept()), (8 * MIB, 4));
    }

    #[test]
    fn idle_buffers_are_unmapped_after_kept_for() {
        let pool = BodyPool::new(16 * MIB);
        let (buffer, loan) = lend_and_write(&pool, 4 * MIB);
        let came_back = Instant::now();
        loan.expect("room").give_back(buffer);
        pool.give_back_idle(came_back);
        assert_eq!(pool.held(), 4 * MIB, "not idle long enough");
        pool.give_back_idle(came_back + KEPT_FOR + Duration::from_millis(1));
        assert_eq!((pool.held(), pool.kept()), (0, 0));
        let empty = BodyPool::new(0);
        assert!(empty.lend(1).1.is_none());
    }
}
