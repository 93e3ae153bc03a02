//! Set reconciliation: which rows two stations hold differently, found at a
//! cost that follows the number of differences, not the size of the tables.
//! Each row is one 32-bit item (a salted hash of its table, uuid and content
//! digest); a PinSketch of the items travels, and the side that decodes the
//! difference knows which rows to send and which to ask for.
//! `docs/reconciliation.md` says why PinSketch, and what it costs.

mod field;
pub mod file;
pub mod sketch;

pub use sketch::Sketch;

/// Largest sketch capacity asked for: 16 kB of sums, decoded in a few seconds.
/// A difference larger than this is cheaper sent by the change logs.
pub const MAX_SKETCH_CAPACITY: u64 = 4096;

/// What decoding the difference of two sketches told the decoding side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// Our items the peer lacks (we send the rows behind them).
    pub ours: Vec<u32>,
    /// The peer's items we lack (we ask for them).
    pub theirs: Vec<u32>,
}

/// Decodes our sketch `mine` (of `items`, at the capacity of `peer_sums`)
/// against the peer's sums; None when the difference exceeds the capacity.
pub fn difference(items: &[u32], mine: &Sketch, peer_sums: &[u32]) -> Option<Difference> {
    let mut diff = mine.clone();
    diff.merge(&Sketch::from_sums(peer_sums.to_vec()));
    let found = diff.decode()?;
    let held: std::collections::HashSet<u32> = items.iter().copied().collect();
    let (ours, theirs) = found.into_iter().partition(|i| held.contains(i));
    Some(Difference { ours, theirs })
}
