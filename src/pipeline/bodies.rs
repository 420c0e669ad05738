//! The event bodies of one invocation, kept in one buffer (usually the request's own, decoded
//! in place) and released from the end as they are converted, so an invocation's Events
//! replace its request in memory instead of adding to it; or, when the buffer is lent by a
//! [`super::BodyPool`], kept whole and given back to the pool for the next request.

use std::ops::Range;

use super::body_pool::{Loan, POOLED_CAPACITY};

/// The raw bytes of each Event Hub event of an invocation, in partition order, held in one
/// buffer.
#[derive(Debug, Default)]
pub struct Bodies {
    buffer: Vec<u8>,
    spans: Vec<Range<usize>>,
    /// Set when the buffer belongs to a [`super::BodyPool`]: it is then kept whole until the
    /// last body is converted, and goes back to the pool.
    loan: Option<Loan>,
}

impl Bodies {
    /// Bodies at `spans` of `buffer`: ordered, non-overlapping and within the buffer, or
    /// `None`.
    pub fn in_buffer(buffer: Vec<u8>, spans: Vec<Range<usize>>) -> Option<Self> {
        let mut end = 0;
        for span in &spans {
            if span.start < end || span.end < span.start || span.end > buffer.len() {
                return None;
            }
            end = span.end;
        }
        Some(Self {
            buffer,
            spans,
            loan: None,
        })
    }

    /// The same bodies, their buffer going back to the pool of `loan` (if any) once the last
    /// body is converted or the bodies are dropped. A buffer that is no longer the pool's
    /// (the request outgrew it, or the bodies were copied out of it) is not kept whole: its
    /// loan ends here.
    pub fn on_loan(mut self, loan: Option<Loan>) -> Self {
        self.loan = loan
            .filter(|loan| loan.lends(&self.buffer) && self.buffer.capacity() == POOLED_CAPACITY);
        self
    }

    /// Bodies copied from separate buffers.
    pub fn from_vecs(bodies: Vec<Vec<u8>>) -> Self {
        let mut buffer = Vec::with_capacity(bodies.iter().map(Vec::len).sum());
        let mut spans = Vec::with_capacity(bodies.len());
        for body in bodies {
            let start = buffer.len();
            buffer.extend_from_slice(&body);
            spans.push(start..buffer.len());
        }
        Self {
            buffer,
            spans,
            loan: None,
        }
    }

    /// How many bodies.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// No bodies.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The body at `index`.
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        self.spans.get(index).map(|s| &self.buffer[s.clone()])
    }

    /// Every body, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().map(|s| &self.buffer[s.clone()])
    }

    /// Copies of every body.
    pub fn to_vecs(&self) -> Vec<Vec<u8>> {
        self.iter().map(<[u8]>::to_vec).collect()
    }

    /// Hands the last body and its index to `f`, then drops it and gives its memory back to
    /// the allocator (a large buffer shrinks in place: no copy), or, for a pool's buffer,
    /// gives the whole buffer back to its pool once no body is left.
    pub fn pop_with<R>(&mut self, f: impl FnOnce(usize, &[u8]) -> R) -> Option<R> {
        let span = self.spans.pop()?;
        let out = f(self.spans.len(), &self.buffer[span.clone()]);
        self.buffer.truncate(span.start);
        if self.loan.is_some() {
            if self.spans.is_empty() {
                self.give_back();
            }
            return Some(out);
        }
        // Given back in steps of a sixteenth of the buffer (at least 64 KiB): each step is an
        // `mremap` that every thread's TLB must hear about, so not one per body.
        let step = (self.buffer.capacity() / 16).max(64 * 1024);
        if self.buffer.capacity() - self.buffer.len() >= step {
            self.buffer.shrink_to_fit();
        }
        Some(out)
    }
}

impl Bodies {
    fn give_back(&mut self) {
        if let Some(loan) = self.loan.take() {
            loan.give_back(std::mem::take(&mut self.buffer));
        }
    }
}

impl Drop for Bodies {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl Clone for Bodies {
    /// The same bodies in a buffer of their own (a copy is never the pool's).
    fn clone(&self) -> Self {
        Self {
            buffer: self.buffer.clone(),
            spans: self.spans.clone(),
            loan: None,
        }
    }
}

impl PartialEq for Bodies {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Bodies {}

impl FromIterator<Vec<u8>> for Bodies {
    /// Bodies copied from separate buffers, as [`Bodies::from_vecs`].
    fn from_iter<I: IntoIterator<Item = Vec<u8>>>(bodies: I) -> Self {
        Self::from_vecs(bodies.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_come_back_from_the_end_and_are_released() {
        let mut bodies = Bodies::from_vecs(vec![b"ab".to_vec(), vec![], b"cde".to_vec()]);
        assert_eq!(bodies.len(), 3);
        assert_eq!(bodies.get(2), Some(&b"cde"[..]));
        let mut seen = Vec::new();
        while let Some(()) = bodies.pop_with(|i, b| seen.push((i, b.to_vec()))) {}
        assert_eq!(
            seen,
            vec![(2, b"cde".to_vec()), (1, vec![]), (0, b"ab".to_vec())]
        );
        assert!(bodies.is_empty() && bodies.buffer.is_empty());
        assert!(Bodies::in_buffer(b"abc".to_vec(), vec![1..2, 0..1]).is_none());
        let past_the_end = std::iter::once(1..4).collect();
        assert!(Bodies::in_buffer(b"abc".to_vec(), past_the_end).is_none());
        let kept = Bodies::in_buffer(b"abc".to_vec(), vec![0..1, 2..3]).unwrap();
        assert_eq!(kept.to_vecs(), vec![b"a".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn a_pool_buffer_is_kept_whole_and_goes_back_after_the_last_body() {
        let pool = crate::pipeline::BodyPool::new(64 * 1024 * 1024);
        let (mut buffer, loan) = pool.lend(6);
        buffer.extend_from_slice(b"ab cde");
        let loan = loan.and_then(|loan| loan.settle(&buffer, buffer.capacity()));
        let address = buffer.as_ptr();
        let mut bodies = Bodies::in_buffer(buffer, vec![0..2, 3..6])
            .unwrap()
            .on_loan(loan);
        assert_eq!(bodies.clone().loan.is_none(), bodies.loan.is_some());
        assert_eq!(
            bodies.pop_with(|i, b| (i, b.to_vec())),
            Some((1, b"cde".to_vec()))
        );
        assert_eq!(bodies.buffer.capacity(), POOLED_CAPACITY, "kept whole");
        assert_eq!(pool.kept(), 0);
        assert_eq!(
            bodies.pop_with(|i, b| (i, b.to_vec())),
            Some((0, b"ab".to_vec()))
        );
        assert_eq!(pool.kept(), 1, "back once no body is left");
        assert_eq!(pool.lend(6).0.as_ptr(), address);

        // Bodies copied out of the pool's buffer (string events) are not the pool's.
        let (buffer, loan) = pool.lend(6);
        let loan = loan.and_then(|loan| loan.settle(&buffer, buffer.capacity()));
        let copied = Bodies::from_vecs(vec![b"x".to_vec()]).on_loan(loan);
        assert!(copied.loan.is_none());
        assert_eq!(pool.held(), 0);
    }
}
