//! The event bodies of one invocation, kept in one buffer (usually the request's own, decoded
//! in place) and released from the end as they are converted, so an invocation's Events
//! replace its request in memory instead of adding to it.

use std::ops::Range;

/// The raw bytes of each Event Hub event of an invocation, in partition order, held in one
/// buffer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Bodies {
    buffer: Vec<u8>,
    spans: Vec<Range<usize>>,
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
        Some(Self { buffer, spans })
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
        Self { buffer, spans }
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
    /// the allocator (a large buffer shrinks in place: no copy).
    pub fn pop_with<R>(&mut self, f: impl FnOnce(usize, &[u8]) -> R) -> Option<R> {
        let span = self.spans.pop()?;
        let out = f(self.spans.len(), &self.buffer[span.clone()]);
        self.buffer.truncate(span.start);
        // Given back in steps of a sixteenth of the buffer (at least 64 KiB): each step is an
        // `mremap` that every thread's TLB must hear about, so not one per body.
        let step = (self.buffer.capacity() / 16).max(64 * 1024);
        if self.buffer.capacity() - self.buffer.len() >= step {
            self.buffer.shrink_to_fit();
        }
        Some(out)
    }
}

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
}
