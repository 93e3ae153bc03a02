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
    /// Fragments add up to more than the limit.
    #[error("fragmented message over {max} bytes")]
    FragmentsTooLong {
        /// The limit, `MAX_REASSEMBLY`.
        max: usize,
    },
    /// A whole message arrived between the fragments of another.
    #[error("message inside a fragmented message")]
    MessageInFragments,
    /// The fragments joined make another fragment.
    #[error("fragment inside a fragmented message")]
    NestedFragment,
    /// A message that the protocol does not allow in this state.
    #[error("unexpected {message} while {state}")]
    Unexpected {
        /// Name of the message.
        message: &'static str,
        /// Name of the state.
        state: &'static str,
    },
    /// A `SketchMore` asking for no more than was sent, or past the limit.
    #[error("sketch capacity {capacity} asked, {have} sent (at most {max})", max = crate::recon::MAX_SKETCH_CAPACITY)]
    SketchCapacity {
        /// The capacity asked for.
        capacity: u64,
        /// The capacity already sent.
        have: u64,
    },
    /// The peer's Hello claims the role this station has.
    #[error("both ends took the same role")]
    SameRole,
    /// The peer's Hello carries this station's own id.
    #[error("peer has this station's own id")]
    OwnId,
    /// A `BundleStart` for an empty bundle, or starting past its end.
    #[error("bundle start with length {total} at offset {offset}")]
    BadBundleStart {
        /// Bundle length.
        total: u64,
        /// Where it starts.
        offset: u64,
    },
    /// A `BundleStart` resumes at an offset that is not what we have stored of it.
    #[error("bundle {id} resumes at {offset}, but {stored} bytes are stored")]
    ResumeMismatch {
        /// The bundle.
        id: BundleId,
        /// Where the peer resumes.
        offset: u64,
        /// Bytes stored here (0 if none of it).
        stored: u64,
    },
    /// A chunk that does not continue the bytes so far, or runs past the end.
    #[error("chunk of {len} bytes at {offset}, expected one at {have} within {total}")]
    ChunkOutOfPlace {
        /// Length of the chunk.
        len: usize,
        /// Its offset.
        offset: u64,
        /// Bytes received so far.
        have: u64,
        /// Length of the bundle.
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
    /// The peer broke the protocol.
    #[error("peer broke the protocol: {0}")]
    Protocol(#[from] Violation),
    /// A bundle over the receiver's limit.
    #[error("peer offers a bundle of {len} bytes, more than the {max} accepted")]
    BundleTooLarge {
        /// Length offered.
        len: u64,
        /// Largest accepted.
        max: u64,
    },
    /// The bundle's bytes do not hash to its id.
    #[error("bundle {id} from peer does not match its id after reassembly")]
    BundleCorrupt {
        /// The id from its `BundleStart`.
        id: BundleId,
    },
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
    Fresh {
        /// The bundle whose stored prefix to delete, if any.
        discard: Option<BundleId>,
    },
}

/// The held pieces lie past the prefix, ascending, apart, within the bundle.
fn pieces_fit(p: &PartialIncoming, total: u64) -> bool {
    let mut end = p.bytes.len() as u64;
    for (off, b) in &p.later {
        if *off <= end || b.is_empty() {
            return false;
        }
        end = off + b.len() as u64;
    }
    end <= total
}

/// An incoming bundle being put together from its chunks.
#[derive(Debug)]
pub struct BundleReassembly {
    id: BundleId,
    total: u64,
    buf: Vec<u8>,
    /// Pieces held past `buf` (from a broadcast heard with gaps): the sender
    /// skips them, and they join `buf` when it reaches them.
    later: std::collections::VecDeque<(u64, Vec<u8>)>,
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
        let (buf, later, start) = match stored {
            Some(p)
                if p.id == id
                    && p.total_len == total
                    && offset == p.bytes.len() as u64
                    && pieces_fit(&p, total) =>
            {
                (p.bytes, p.later.into(), Start::Continues)
            }
            other if offset != 0 => {
                let stored = other.map_or(0, |p| p.bytes.len() as u64);
                return Err(Violation::ResumeMismatch { id, offset, stored }.into());
            }
            other => (
                Vec::new(),
                Default::default(),
                Start::Fresh {
                    discard: other.map(|p| p.id),
                },
            ),
        };
        let mut r = BundleReassembly {
            id,
            total,
            buf,
            later,
            resumed: more,
        };
        r.join_later();
        Ok((r, start))
    }

    /// The next chunk; it must continue exactly where the bytes so far end,
    /// and stop at the next piece held.
    pub fn chunk(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Violation> {
        let have = self.buf.len() as u64;
        let limit = self.later.front().map_or(self.total, |p| p.0);
        if offset != have || have + bytes.len() as u64 > limit {
            return Err(Violation::ChunkOutOfPlace {
                len: bytes.len(),
                offset,
                have,
                total: self.total,
            });
        }
        self.buf.extend_from_slice(bytes);
        self.join_later();
        Ok(())
    }

    /// Held pieces that the bytes so far reach join them.
    fn join_later(&mut self) {
        while self
            .later
            .front()
            .is_some_and(|p| p.0 == self.buf.len() as u64)
        {
            let (_, piece) = self.later.pop_front().expect("front");
            self.buf.extend_from_slice(&piece);
        }
    }

    /// The bundle's id.
    pub fn id(&self) -> BundleId {
        self.id
    }

    /// Length of the whole bundle.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes held so far, stored prefix included.
    pub fn received(&self) -> u64 {
        self.buf.len() as u64
    }

    /// A kept bundle of the peer's (`more`): a fresh one follows it.
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
            later: self.later.into(),
        }
    }

    /// Every byte is here.
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
