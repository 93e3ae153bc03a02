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
