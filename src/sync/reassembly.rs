//! The receiving half of the session protocol that both a live session and `replay` run:
//! fragments joined into messages, and bundles put together from their chunks (with
//! resume from a stored prefix and the id check). Pure, and it decides only; the caller
//! keeps the partial on disk and says what happened.

use super::message::{BundleId, Message, MessageError, MAX_REASSEMBLY};
use super::session::PartialIncoming;

/// A peer that broke the session protocol (its bytes were readable, its behaviour not).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    #[error("fragmented message over {max} bytes")]
    FragmentsTooLong { max: usize },
    #[error("message inside a fragmented message")]
    MessageInFragments,
    #[error("fragment inside a fragmented message")]
    NestedFragment,
    #[error("unexpected {message} while {state}")]
    Unexpected {
        message: &'static str,
        state: &'static str,
    },
    #[error("both ends took the same role")]
    SameRole,
    #[error("peer has this station's own id")]
    OwnId,
    #[error("bundle start with length {total} at offset {offset}")]
    BadBundleStart { total: u64, offset: u64 },
    #[error("bundle {id} resumes at {offset}, but {stored} bytes are stored")]
    ResumeMismatch {
        id: BundleId,
        offset: u64,
        stored: u64,
    },
    #[error("chunk of {len} bytes at {offset}, expected one at {have} within {total}")]
    ChunkOutOfPlace {
        len: usize,
        offset: u64,
        have: u64,
        total: u64,
    },
}

/// Why an incoming message or bundle was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// Bytes that are no message (past the frame CRC, so likely a peer bug).
    #[error("unreadable message from peer: {0}")]
    Malformed(#[from] MessageError),
    #[error("peer broke the protocol: {0}")]
    Protocol(#[from] Violation),
    #[error("peer offers a bundle of {len} bytes, more than the {max} accepted")]
    BundleTooLarge { len: u64, max: u64 },
    #[error("bundle {id} from peer does not match its id after reassembly")]
    BundleCorrupt { id: BundleId },
}

/// Joins `Fragment` messages into the message they carry.
#[derive(Debug, Default)]
pub struct Defragmenter {
    buf: Vec<u8>,
}

impl Defragmenter {
    /// One message off the ARQ: the whole message, or `None` while fragments are still
    /// to come. After an error the fragments so far are forgotten.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Message>, ReceiveError> {
        let parsed = Message::parse(bytes);
        let whole = match parsed {
            Ok(Message::Fragment { last, bytes }) => {
                if self.buf.len() + bytes.len() > MAX_REASSEMBLY {
                    self.buf.clear();
                    return Err(Violation::FragmentsTooLong {
                        max: MAX_REASSEMBLY,
                    }
                    .into());
                }
                self.buf.extend_from_slice(&bytes);
                if !last {
                    return Ok(None);
                }
                let whole = std::mem::take(&mut self.buf);
                Message::parse(&whole)
            }
            _ if !self.buf.is_empty() => {
                self.buf.clear();
                return Err(Violation::MessageInFragments.into());
            }
            other => other,
        };
        match whole? {
            Message::Fragment { .. } => Err(Violation::NestedFragment.into()),
            m => Ok(Some(m)),
        }
    }
}

/// How a `BundleStart` relates to the partial bundle stored from this peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// It continues the stored prefix.
    Continues,
    /// A new transfer from the first byte; the stored partial of `discard`, if any, is stale.
    Fresh { discard: Option<BundleId> },
}

/// An incoming bundle being put together from its chunks.
#[derive(Debug)]
pub struct BundleReassembly {
    id: BundleId,
    total: u64,
    buf: Vec<u8>,
    /// Sent by the peer as a kept bundle (`more`): a fresh one follows it.
    resumed: bool,
}

impl BundleReassembly {
    /// Checks a `BundleStart` (`offset` bytes the peer believes are stored here) against
    /// the size limit and the stored partial.
    pub fn start(
        id: BundleId,
        total: u64,
        offset: u64,
        more: bool,
        max_bundle: u64,
        stored: Option<PartialIncoming>,
    ) -> Result<(BundleReassembly, Start), ReceiveError> {
        if total == 0 || offset > total {
            return Err(Violation::BadBundleStart { total, offset }.into());
        }
        if total > max_bundle {
            return Err(ReceiveError::BundleTooLarge {
                len: total,
                max: max_bundle,
            });
        }
        let (buf, start) = match stored {
            Some(p) if p.id == id && p.total_len == total && offset == p.bytes.len() as u64 => {
                (p.bytes, Start::Continues)
            }
            other if offset != 0 => {
                let stored = other.map_or(0, |p| p.bytes.len() as u64);
                return Err(Violation::ResumeMismatch { id, offset, stored }.into());
            }
            other => (
                Vec::new(),
                Start::Fresh {
                    discard: other.map(|p| p.id),
                },
            ),
        };
        let r = BundleReassembly {
            id,
            total,
            buf,
            resumed: more,
        };
        Ok((r, start))
    }

    /// The next chunk; it must continue exactly where the bytes so far end.
    pub fn chunk(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Violation> {
        let have = self.buf.len() as u64;
        if offset != have || have + bytes.len() as u64 > self.total {
            return Err(Violation::ChunkOutOfPlace {
                len: bytes.len(),
                offset,
                have,
                total: self.total,
            });
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    pub fn id(&self) -> BundleId {
        self.id
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn received(&self) -> u64 {
        self.buf.len() as u64
    }

    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// What a receiver stores to resume this bundle later.
    pub fn into_partial(self) -> PartialIncoming {
        PartialIncoming {
            id: self.id,
            total_len: self.total,
            bytes: self.buf,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.buf.len() as u64 == self.total
    }

    /// The whole bundle, if its bytes hash to its id.
    pub fn finish(self) -> Result<Vec<u8>, ReceiveError> {
        if BundleId::of(&self.buf) != self.id {
            return Err(ReceiveError::BundleCorrupt { id: self.id });
        }
        Ok(self.buf)
    }
}
