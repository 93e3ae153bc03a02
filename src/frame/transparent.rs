//! Transparent framing for raw serial radios that flip bits, drop bytes and add noise.
//!
//! ```text
//! 0..4    sync word   0x1A 0xCF 0xFC 0x1D (CCSDS attached sync marker), <= 3 bit errors accepted
//! 4..10   length      RS(6,2) codeword: body length u16 big-endian + 4 parity bytes
//!                     (any 2 byte errors in these 6 bytes are corrected)
//! 10..    body        Frame::encode(fec): header, tag, payload, CRC-32C, RS parity
//! ```
//!
//! The deframer hunts for the sync word byte by byte (UART radios keep byte alignment
//! but may drop bytes). If the length or the body fails, it skips one byte past that
//! sync word and hunts again, so a frame that lost a byte costs only itself: the next
//! frame's sync word, partly swallowed into the bad body, is found on the rescan.

use std::collections::VecDeque;

use reed_solomon::{Decoder, Encoder};
use thiserror::Error;

use super::{wire, DecodeInfo, FecParams, Frame, FrameError};

/// CCSDS 131.0-B attached sync marker: low off-peak autocorrelation, widely used.
pub const SYNC_WORD: [u8; 4] = [0x1A, 0xCF, 0xFC, 0x1D];
/// Bit errors tolerated in the sync word. A random 32-bit window matches with
/// probability sum_{k<=3} C(32,k) / 2^32 = 1.3e-6, and must then pass the length code.
pub const SYNC_MAX_BIT_ERRORS: u32 = 3;
const LEN_PARITY: usize = 4;
/// Sync word plus protected length.
pub const HEADER_LEN: usize = SYNC_WORD.len() + 2 + LEN_PARITY;

/// Why bytes after a sync word made no frame, or a frame cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TransparentError {
    /// The RS(6,2) length code has more than 2 byte errors.
    #[error("length field after a sync word is uncorrectable")]
    BadLength,
    /// The length decoded but no frame of this profile has it.
    #[error("length field says {len} bytes, outside {min}..={max} for this profile")]
    ImpossibleLength {
        /// Body length from the header.
        len: usize,
        /// Shortest body this profile can produce.
        min: usize,
        /// Longest body this profile can produce.
        max: usize,
    },
    /// The body did not decode as a frame.
    #[error("frame body: {0}")]
    Frame(#[from] FrameError),
    /// The encoded frame is longer than 65535 bytes.
    #[error("encoded frame of {0} bytes does not fit the 16-bit length field")]
    TooLong(usize),
}

/// Bytes on the wire for a body of `body_len` bytes.
pub fn framed_len(body_len: usize) -> usize {
    HEADER_LEN + body_len
}

/// Sync word, protected length and the FEC-encoded frame.
pub fn encode(frame: &Frame, fec: Option<&FecParams>) -> Result<Vec<u8>, TransparentError> {
    let body = frame.encode(fec)?;
    let len = u16::try_from(body.len()).map_err(|_| TransparentError::TooLong(body.len()))?;
    let mut out = Vec::with_capacity(framed_len(body.len()));
    out.extend_from_slice(&SYNC_WORD);
    out.extend_from_slice(&Encoder::new(LEN_PARITY).encode(&len.to_be_bytes()));
    out.extend_from_slice(&body);
    Ok(out)
}

fn sync_distance(window: &[u8]) -> u32 {
    window
        .iter()
        .zip(SYNC_WORD)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum()
}

/// Counters for logs and the capture view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeframerStats {
    /// Frames decoded.
    pub frames: u64,
    /// Sync words whose frame failed (length or body), or that were given up on.
    pub bad_frames: u64,
    /// Bytes dropped: noise between frames, one per failed sync word, and resets.
    pub skipped_bytes: u64,
    /// Byte errors Reed-Solomon repaired in decoded frames.
    pub corrected_symbols: u64,
}

/// Byte-stream deframer for the transparent link.
#[derive(Debug, Clone)]
pub struct TransparentDeframer {
    buf: VecDeque<u8>,
    fec: Option<FecParams>,
    min_body: usize,
    max_body: usize,
    stats: DeframerStats,
}

impl TransparentDeframer {
    /// A deframer for bodies with these FEC parameters (`None`: no FEC).
    pub fn new(fec: Option<FecParams>) -> Self {
        let min = wire::HEADER_LEN + wire::CRC_LEN;
        let (min_body, max_body) = match &fec {
            Some(f) => (f.encoded_len(min), f.encoded_len(wire::MAX_FRAME_LEN)),
            None => (min, wire::MAX_FRAME_LEN),
        };
        TransparentDeframer {
            buf: VecDeque::new(),
            fec,
            min_body,
            max_body: max_body.min(u16::MAX as usize),
            stats: DeframerStats::default(),
        }
    }

    /// Bytes from the port.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend(bytes);
    }

    /// Counters so far.
    pub fn stats(&self) -> DeframerStats {
        self.stats
    }

    /// Bytes held while waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The shell saw the channel go quiet. A frame still waiting for its body lost bytes
    /// (or its sync word was false) and will not complete: give it up now, so the next
    /// frame is not held back until enough bytes arrive to fill the stale length.
    /// Returns whether a pending frame was dropped; call `next()` afterwards.
    pub fn channel_idle(&mut self) -> bool {
        let sl = SYNC_WORD.len();
        let head = self.buf.make_contiguous();
        let pending = head.len() >= sl && sync_distance(&head[..sl]) <= SYNC_MAX_BIT_ERRORS;
        if pending {
            self.stats.bad_frames += 1;
            self.skip(1);
        }
        pending
    }

    /// Forgets buffered bytes (e.g. after the port was reopened).
    pub fn reset(&mut self) {
        self.stats.skipped_bytes += self.buf.len() as u64;
        self.buf.clear();
    }

    fn skip(&mut self, n: usize) {
        self.buf.drain(..n);
        self.stats.skipped_bytes += n as u64;
    }

    /// Next frame, an error for a sync word whose frame failed (the deframer has
    /// already moved past it), or `None` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<(Frame, DecodeInfo), TransparentError>> {
        let sl = SYNC_WORD.len();
        let contiguous = self.buf.make_contiguous();
        let found = contiguous
            .windows(sl)
            .position(|w| sync_distance(w) <= SYNC_MAX_BIT_ERRORS);
        match found {
            None => {
                // Keep a tail that may be the start of a sync word.
                let keep = self.buf.len().min(sl - 1);
                self.skip(self.buf.len() - keep);
                return None;
            }
            Some(i) => self.skip(i),
        }
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let head = self.buf.make_contiguous();
        let len = match Decoder::new(LEN_PARITY).correct(&head[sl..HEADER_LEN], None) {
            Ok(buf) => u16::from_be_bytes([buf.data()[0], buf.data()[1]]) as usize,
            Err(_) => return Some(Err(self.fail(TransparentError::BadLength))),
        };
        let length_ok = (self.min_body..=self.max_body).contains(&len)
            && self.fec.as_ref().is_none_or(|f| f.data_len(len).is_some());
        if !length_ok {
            let e = TransparentError::ImpossibleLength {
                len,
                min: self.min_body,
                max: self.max_body,
            };
            return Some(Err(self.fail(e)));
        }
        if self.buf.len() < HEADER_LEN + len {
            return None;
        }
        let body = &self.buf.make_contiguous()[HEADER_LEN..HEADER_LEN + len];
        match Frame::decode(body, self.fec.as_ref()) {
            Ok((frame, info)) => {
                self.buf.drain(..HEADER_LEN + len);
                self.stats.frames += 1;
                self.stats.corrected_symbols += info.corrected_symbols as u64;
                Some(Ok((frame, info)))
            }
            Err(e) => Some(Err(self.fail(e.into()))),
        }
    }

    /// Gives up on the sync word at the front: skip one byte and hunt again.
    fn fail(&mut self, e: TransparentError) -> TransparentError {
        self.stats.bad_frames += 1;
        self.skip(1);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameKind;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const FEC: FecParams = FecParams {
        parity_bytes_per_block: 16,
        block_data_len: 64,
        interleave: true,
    };

    fn frame(seq: u16, len: usize) -> Frame {
        Frame {
            kind: FrameKind::Data,
            session: 7,
            seq,
            payload: (0..len).map(|i| (i * 31 + seq as usize) as u8).collect(),
            auth_tag: None,
            route: None,
        }
    }

    fn drain(d: &mut TransparentDeframer) -> (Vec<Frame>, usize) {
        let mut frames = Vec::new();
        let mut errors = 0;
        while let Some(r) = d.next() {
            match r {
                Ok((f, _)) => frames.push(f),
                Err(_) => errors += 1,
            }
        }
        (frames, errors)
    }

    /// The figures docs/wire-format-frames.md gives for byte-shifted self-overlap.
    #[test]
    fn sync_word_shifted_overlap() {
        let d: Vec<u32> = (1..4)
            .map(|s| {
                SYNC_WORD[s..]
                    .iter()
                    .zip(&SYNC_WORD[..4 - s])
                    .map(|(a, b)| (a ^ b).count_ones())
                    .sum()
            })
            .collect();
        assert_eq!(d, [13, 9, 3]);
    }

    #[test]
    fn literal_header() {
        let f = frame(1, 0);
        let bytes = encode(&f, None).unwrap();
        assert_eq!(&bytes[..4], &SYNC_WORD);
        // Body is 12 bytes: length 0x000C followed by its RS parity.
        assert_eq!(&bytes[4..6], &[0x00, 0x0C]);
        assert_eq!(&bytes[4..10], &Encoder::new(4).encode(&[0, 12])[..]);
        assert_eq!(&bytes[10..], &f.encode(None).unwrap()[..]);
        assert_eq!(bytes.len(), framed_len(12));
        let mut d = TransparentDeframer::new(None);
        d.push(&bytes);
        assert_eq!(drain(&mut d), (vec![f], 0));
    }

    #[test]
    fn impossible_lengths_rejected() {
        let mut bytes = SYNC_WORD.to_vec();
        bytes.extend_from_slice(&Encoder::new(4).encode(&[0, 3]));
        bytes.extend_from_slice(&[0; 20]);
        let mut d = TransparentDeframer::new(None);
        d.push(&bytes);
        assert_eq!(
            d.next(),
            Some(Err(TransparentError::ImpossibleLength {
                len: 3,
                min: 12,
                max: wire::MAX_FRAME_LEN
            }))
        );
        // 50 bytes with FEC 16/64 is not n*(k)+16n for any valid split.
        let mut bytes = SYNC_WORD.to_vec();
        bytes.extend_from_slice(&Encoder::new(4).encode(&[0, 17]));
        let mut d = TransparentDeframer::new(Some(FEC));
        d.push(&bytes);
        assert!(matches!(
            d.next(),
            Some(Err(TransparentError::ImpossibleLength { len: 17, .. }))
        ));
        // Unreadable length code.
        let mut bytes = SYNC_WORD.to_vec();
        bytes.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66]);
        let mut d = TransparentDeframer::new(None);
        d.push(&bytes);
        assert_eq!(d.next(), Some(Err(TransparentError::BadLength)));
    }

    #[test]
    fn noise_between_frames() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let frames: Vec<Frame> = (0..20).map(|i| frame(i, rng.gen_range(0..250))).collect();
        let mut wire = Vec::new();
        for f in &frames {
            let noise: Vec<u8> = (0..rng.gen_range(0..100)).map(|_| rng.gen()).collect();
            wire.extend(noise);
            wire.extend(encode(f, Some(&FEC)).unwrap());
        }
        let mut d = TransparentDeframer::new(Some(FEC));
        // Feed in random-sized pieces, as a serial port would deliver them.
        let mut got = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let n = rng.gen_range(1..40).min(wire.len() - at);
            d.push(&wire[at..at + n]);
            at += n;
            got.extend(drain(&mut d).0);
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn dropped_byte_loses_only_that_frame() {
        let frames: Vec<Frame> = (0..3).map(|i| frame(i, 100)).collect();
        for fec in [None, Some(FEC)] {
            for drop_at in [0usize, 2, 5, 9, 10, 60, 125] {
                let mut wire = Vec::new();
                for (i, f) in frames.iter().enumerate() {
                    let mut b = encode(f, fec.as_ref()).unwrap();
                    if i == 1 {
                        b.remove(drop_at.min(b.len() - 1));
                    }
                    wire.extend(b);
                }
                let mut d = TransparentDeframer::new(fec);
                d.push(&wire);
                let (got, _) = drain(&mut d);
                assert_eq!(
                    got,
                    vec![frames[0].clone(), frames[2].clone()],
                    "{fec:?} drop {drop_at}"
                );
            }
        }
    }

    #[test]
    fn idle_gives_up_a_frame_that_lost_bytes() {
        let mut a = encode(&frame(1, 50), Some(&FEC)).unwrap();
        a.remove(30);
        let mut d = TransparentDeframer::new(Some(FEC));
        d.push(&a);
        assert_eq!(d.next(), None);
        assert!(d.channel_idle());
        assert_eq!(d.next(), None);
        assert!(d.buffered() <= 3, "{}", d.buffered());
        assert!(!d.channel_idle());
        // The next frame decodes at once, without feeding the stale one.
        let b = encode(&frame(2, 50), Some(&FEC)).unwrap();
        d.push(&b);
        assert_eq!(d.next().unwrap().unwrap().0, frame(2, 50));
        assert_eq!(d.stats().bad_frames, 1);
        assert_eq!(d.stats().frames, 1);
    }

    #[test]
    fn errors_up_to_capacity_corrected_beyond_refused() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let f = frame(9, 200);
        let clean = encode(&f, Some(&FEC)).unwrap();
        let t = FEC.correctable_per_block();
        for _ in 0..200 {
            let mut b = clean.clone();
            // 3 bit errors in the sync word, 2 byte errors in the length.
            for bit in rand::seq::index::sample(&mut rng, 32, 3) {
                b[bit / 8] ^= 1 << (bit % 8);
            }
            for i in rand::seq::index::sample(&mut rng, 6, 2) {
                b[4 + i] ^= rng.gen_range(1..=255);
            }
            // t byte errors per RS block: interleaved, block k holds bytes k, k+n, k+2n, ...
            let body = &mut b[HEADER_LEN..];
            let n = FEC.blocks_for(f.encoded_len(None));
            for block in 0..n {
                let positions: Vec<usize> = (block..body.len()).step_by(n).collect();
                for i in rand::seq::index::sample(&mut rng, positions.len(), t) {
                    body[positions[i]] ^= rng.gen_range(1..=255);
                }
            }
            let mut d = TransparentDeframer::new(Some(FEC));
            d.push(&b);
            let (got, info) = d.next().unwrap().unwrap();
            assert_eq!(got, f);
            assert_eq!(info.corrected_symbols, n * t);
        }
        // Beyond capacity: many random byte errors; never a wrong frame.
        let mut wrong_refused = 0;
        for _ in 0..300 {
            let mut b = clean.clone();
            for _ in 0..rng.gen_range(40..80) {
                let i = rng.gen_range(HEADER_LEN..b.len());
                b[i] ^= rng.gen_range(1..=255);
            }
            let mut d = TransparentDeframer::new(Some(FEC));
            d.push(&b);
            while let Some(r) = d.next() {
                match r {
                    Ok((got, _)) => assert_eq!(got, f),
                    Err(_) => wrong_refused += 1,
                }
            }
        }
        assert!(wrong_refused >= 300);
    }

    proptest! {
        #![proptest_config(crate::frame::proptest_config(64))]

        #[test]
        fn round_trip_after_noise(noise in proptest::collection::vec(any::<u8>(), 0..200),
                                  payload in proptest::collection::vec(any::<u8>(), 0..400),
                                  use_fec: bool) {
            let fec = use_fec.then_some(FEC);
            let f = Frame { payload, ..frame(1, 0) };
            let mut wire = noise;
            wire.extend(encode(&f, fec.as_ref()).unwrap());
            let mut d = TransparentDeframer::new(fec);
            d.push(&wire);
            let (got, _) = drain(&mut d);
            prop_assert_eq!(got, vec![f]);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..3000), use_fec: bool) {
            let mut d = TransparentDeframer::new(use_fec.then_some(FEC));
            d.push(&bytes);
            drain(&mut d);
            // Without a sync word in the tail, only the last 3 bytes stay buffered.
            prop_assert!(d.buffered() <= bytes.len());
        }
    }
}
