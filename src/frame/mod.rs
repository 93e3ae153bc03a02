//! Wire formats, pure (no I/O, no clock): the radiosync frame with CRC-32C, Reed-Solomon
//! FEC, KISS, AX.25 UI wrapping and transparent framing for raw serial radios.
//!
//! Byte tables and the reasons behind CRC, FEC and PID choices: `docs/wire-format-frames.md`.
//!
//! ```text
//! Frame --encode--> [header | tag | payload | CRC-32C] --RS/interleave--> blob
//!   KISS link:        blob -> AX.25 UI (amateur) -> KISS escape -> TNC
//!   transparent link: sync word | RS(6,2) length | blob
//! ```

pub mod ax25;
pub mod fec;
pub mod framer;
pub mod hdlc;
pub mod kiss;
pub mod link;
pub mod transparent;
pub mod wire;

use thiserror::Error;

pub use fec::{FecError, FecParams};
pub use wire::{FrameKind, FramePacket, FrameRepr, Route, MAX_AUTH_TAG_LEN, MAX_PAYLOAD_LEN};

/// Errors from frame bytes (bad bytes from the air) or from building a frame (a local
/// mistake: oversize payload, bad tag length, bad FEC parameters).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than the header (or its tag length byte) needs.
    #[error("frame truncated: need at least {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes there are.
        have: usize,
    },
    /// The buffer is not exactly as long as the header says.
    #[error("frame length mismatch: header describes {header} bytes, have {have}")]
    LengthMismatch {
        /// Length the header describes.
        header: usize,
        /// Length there is.
        have: usize,
    },
    /// The CRC-32C over the frame does not match the stored one.
    #[error("frame CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC at the end of the frame.
        stored: u32,
        /// CRC over the bytes received.
        computed: u32,
    },
    /// Flag bits other than the auth tag flag are set.
    #[error("reserved frame flags set: {0:#04x}")]
    ReservedFlags(u8),
    /// An auth tag of 0 or more than `MAX_AUTH_TAG_LEN` bytes.
    #[error("authentication tag length {0} outside 1..=64")]
    AuthTagLength(usize),
    /// A payload over `MAX_PAYLOAD_LEN` bytes.
    #[error("payload of {0} bytes exceeds the 4096-byte limit")]
    PayloadTooLong(usize),
    /// Reed-Solomon failed or the FEC parameters are bad.
    #[error(transparent)]
    Fec(#[from] FecError),
}

/// One radiosync frame, owned. The ARQ and sync layers build and read these;
/// `payload` is opaque here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Data, ack or control.
    pub kind: FrameKind,
    /// Session the frame belongs to; one link carries several.
    pub session: u16,
    /// ARQ sequence number (for acks, the next one expected).
    pub seq: u16,
    /// At most `MAX_PAYLOAD_LEN` bytes.
    pub payload: Vec<u8>,
    /// Room for a short signature (1..=64 bytes); the signer is another module.
    pub auth_tag: Option<Vec<u8>>,
    /// Receiver and sender on links without other addressing; `None` elsewhere.
    pub route: Option<Route>,
}

/// What decoding learned besides the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeInfo {
    /// Byte (symbol) errors Reed-Solomon repaired; 0 without FEC.
    pub corrected_symbols: usize,
    /// RS blocks in the frame; 0 without FEC.
    pub blocks: usize,
    /// Bytes decoded (frame plus parity).
    pub encoded_len: usize,
}

impl Frame {
    fn repr(&self) -> FrameRepr<'_> {
        FrameRepr {
            kind: self.kind,
            session: self.session,
            seq: self.seq,
            route: self.route,
            auth_tag: self.auth_tag.as_deref(),
            payload: &self.payload,
        }
    }

    /// Frame bytes before FEC (header, tag, payload, CRC).
    pub fn to_bytes(&self) -> Result<Vec<u8>, FrameError> {
        let repr = self.repr();
        repr.check()?;
        let mut buf = vec![0; repr.buffer_len()];
        repr.emit(&mut FramePacket::new_unchecked(&mut buf[..]));
        Ok(buf)
    }

    /// Bytes this frame takes before any link framing, FEC included.
    pub fn encoded_len(&self, fec: Option<&FecParams>) -> usize {
        let n = self.repr().buffer_len();
        fec.map_or(n, |f| f.encoded_len(n))
    }

    /// Encodes, adding RS parity when the profile asks for it.
    pub fn encode(&self, fec: Option<&FecParams>) -> Result<Vec<u8>, FrameError> {
        let bytes = self.to_bytes()?;
        match fec {
            None => Ok(bytes),
            Some(f) => Ok(fec::encode(&bytes, f)?),
        }
    }

    /// Decodes untrusted bytes: RS correction (if `fec`), then length and CRC checks.
    /// Never panics; a frame is returned only if its CRC matches after correction.
    pub fn decode(
        bytes: &[u8],
        fec: Option<&FecParams>,
    ) -> Result<(Frame, DecodeInfo), FrameError> {
        let (inner, info) = match fec {
            None => (
                std::borrow::Cow::Borrowed(bytes),
                DecodeInfo {
                    encoded_len: bytes.len(),
                    ..DecodeInfo::default()
                },
            ),
            Some(f) => {
                let (data, corrected) = fec::decode(bytes, f)?;
                let blocks = f.blocks_for(data.len());
                (
                    std::borrow::Cow::Owned(data),
                    DecodeInfo {
                        corrected_symbols: corrected,
                        blocks,
                        encoded_len: bytes.len(),
                    },
                )
            }
        };
        let packet = FramePacket::new_checked(&inner[..])?;
        let repr = FrameRepr::parse(&packet)?;
        Ok((
            Frame {
                kind: repr.kind,
                session: repr.session,
                seq: repr.seq,
                payload: repr.payload.to_vec(),
                auth_tag: repr.auth_tag.map(<[u8]>::to_vec),
                route: repr.route,
            },
            info,
        ))
    }
}

#[cfg(test)]
pub(crate) fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5ADC_0FFE),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Frame {
        Frame {
            kind: FrameKind::Ack,
            session: 0xBEEF,
            seq: 42,
            payload: b"ack-info".to_vec(),
            auth_tag: None,
            route: None,
        }
    }

    const FEC: FecParams = FecParams {
        parity_bytes_per_block: 8,
        block_data_len: 16,
        interleave: true,
    };

    #[test]
    fn literal_encode_without_fec() {
        let bytes = sample().encode(None).unwrap();
        assert_eq!(
            &bytes[..16],
            &[
                0x02, 0x00, 0xBE, 0xEF, 0x00, 0x2A, 0x00, 0x08, b'a', b'c', b'k', b'-', b'i', b'n',
                b'f', b'o'
            ]
        );
        assert_eq!(
            &bytes[16..],
            &wire::CRC32C.checksum(&bytes[..16]).to_be_bytes()
        );
        assert_eq!(bytes.len(), sample().encoded_len(None));
        let (f, info) = Frame::decode(&bytes, None).unwrap();
        assert_eq!(f, sample());
        assert_eq!(
            info,
            DecodeInfo {
                corrected_symbols: 0,
                blocks: 0,
                encoded_len: 20
            }
        );
    }

    #[test]
    fn encode_rejects_bad_frames() {
        let mut f = sample();
        f.payload = vec![0; MAX_PAYLOAD_LEN + 1];
        assert_eq!(
            f.encode(None),
            Err(FrameError::PayloadTooLong(MAX_PAYLOAD_LEN + 1))
        );
        let mut f = sample();
        f.auth_tag = Some(vec![]);
        assert_eq!(f.encode(None), Err(FrameError::AuthTagLength(0)));
        f.auth_tag = Some(vec![0; 64]);
        assert!(f.encode(None).is_ok());
        f.auth_tag = Some(vec![0; 65]);
        assert_eq!(f.encode(None), Err(FrameError::AuthTagLength(65)));
        let bad = FecParams {
            parity_bytes_per_block: 5,
            ..FEC
        };
        assert!(matches!(
            sample().encode(Some(&bad)),
            Err(FrameError::Fec(FecError::BadParams(_)))
        ));
    }

    #[test]
    fn fec_frame_length_and_blocks() {
        let bytes = sample().encode(Some(&FEC)).unwrap();
        // 20 bytes -> 2 blocks of 10 + 8 parity each.
        assert_eq!(bytes.len(), 36);
        assert_eq!(bytes.len(), sample().encoded_len(Some(&FEC)));
        let (f, info) = Frame::decode(&bytes, Some(&FEC)).unwrap();
        assert_eq!(f, sample());
        assert_eq!(
            info,
            DecodeInfo {
                corrected_symbols: 0,
                blocks: 2,
                encoded_len: 36
            }
        );
    }

    /// The overhead figures quoted in docs/wire-format-frames.md.
    #[test]
    fn documented_overheads() {
        let rs = FecParams {
            parity_bytes_per_block: 16,
            block_data_len: 239,
            interleave: true,
        };
        for (payload, plain, coded, framed) in [(250, 262, 294, 304), (1000, 1012, 1092, 1102)] {
            let f = Frame {
                payload: vec![0; payload],
                ..sample()
            };
            assert_eq!(f.encoded_len(None), plain);
            assert_eq!(f.encoded_len(Some(&rs)), coded);
            assert_eq!(transparent::encode(&f, Some(&rs)).unwrap().len(), framed);
            assert_eq!(link::kiss_payload_len(&f, None, true), plain + 16);
        }
    }

    /// Every single-bit flip is corrected with FEC and refused by the CRC without it;
    /// never is a wrong frame accepted.
    #[test]
    fn every_single_bit_flip() {
        let frame = Frame {
            auth_tag: Some(vec![9; 4]),
            route: None,
            ..sample()
        };
        let plain = frame.encode(None).unwrap();
        for bit in 0..plain.len() * 8 {
            let mut b = plain.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            match Frame::decode(&b, None) {
                Ok((f, _)) => panic!("bit {bit} accepted: {f:?}"),
                Err(FrameError::BadCrc { .. })
                | Err(FrameError::LengthMismatch { .. })
                | Err(FrameError::ReservedFlags(_))
                | Err(FrameError::PayloadTooLong(_))
                | Err(FrameError::AuthTagLength(_)) => {}
                Err(e) => panic!("bit {bit}: unexpected {e}"),
            }
        }
        let coded = frame.encode(Some(&FEC)).unwrap();
        for bit in 0..coded.len() * 8 {
            let mut b = coded.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let (f, info) = Frame::decode(&b, Some(&FEC)).unwrap();
            assert_eq!(f, frame);
            assert_eq!(info.corrected_symbols, 1);
        }
    }

    /// An RS miscorrection: the damage puts the bytes within t of another codeword, so RS
    /// "repairs" them into a different frame. Only the CRC stands between it and the database.
    #[test]
    fn crc_refuses_rs_miscorrection() {
        let fec = FecParams {
            parity_bytes_per_block: 4,
            block_data_len: 30,
            interleave: false,
        };
        let inner = sample().to_bytes().unwrap();
        let c = fec::encode(&inner, &fec).unwrap();
        let mut other = inner.clone();
        other[10] ^= 0x5A;
        let c2 = fec::encode(&other, &fec).unwrap();
        let diff: Vec<usize> = (0..c.len()).filter(|&i| c[i] != c2[i]).collect();
        assert_eq!(
            diff.len(),
            5,
            "RS(24,20) codewords differ in at least 5 places"
        );
        // 3 errors (> t = 2) towards c2 leave the word 2 symbols from c2.
        let mut r = c.clone();
        for &i in &diff[..3] {
            r[i] = c2[i];
        }
        let (decoded, fixed) = fec::decode(&r, &fec).unwrap();
        assert_eq!((decoded, fixed), (other, 2));
        assert!(matches!(
            Frame::decode(&r, Some(&fec)),
            Err(FrameError::BadCrc { .. })
        ));
    }

    /// Too many errors: RS gives up or miscorrects, and the CRC refuses; never a wrong frame.
    #[test]
    fn heavy_corruption_never_accepted_wrong() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let small = FecParams {
            parity_bytes_per_block: 4,
            block_data_len: 30,
            interleave: false,
        };
        let frame = Frame {
            payload: (0..40).collect(),
            ..sample()
        };
        let coded = frame.encode(Some(&small)).unwrap();
        let mut refused = 0;
        for _ in 0..2000 {
            let mut b = coded.clone();
            for _ in 0..rng.gen_range(3..12) {
                let i = rng.gen_range(0..b.len());
                b[i] ^= rng.gen_range(1..=255);
            }
            match Frame::decode(&b, Some(&small)) {
                Ok((f, _)) => assert_eq!(f, frame),
                Err(_) => refused += 1,
            }
        }
        assert!(refused > 1000, "{refused}");
    }

    /// Valid encodings with random edits (flips, inserts, deletes, cuts) through every
    /// decoder: reaches the paths random bytes rarely do (a valid header, a near-valid RS
    /// block). Nothing may panic, and anything accepted must be the original frame.
    #[test]
    fn mutated_encodings_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
        let fecs = [
            None,
            Some(FecParams {
                parity_bytes_per_block: 2,
                block_data_len: 3,
                interleave: true,
            }),
            Some(FEC),
        ];
        for round in 0..3000 {
            let fec = fecs[round % fecs.len()];
            let frame = Frame {
                payload: (0..rng.gen_range(0..80)).map(|_| rng.gen()).collect(),
                auth_tag: rng.gen_bool(0.3).then(|| vec![1; rng.gen_range(1..=64)]),
                ..sample()
            };
            let mut b = transparent::encode(&frame, fec.as_ref()).unwrap();
            for _ in 0..rng.gen_range(1..6) {
                let i = rng.gen_range(0..b.len());
                match rng.gen_range(0..4) {
                    0 => b[i] ^= 1 << rng.gen_range(0..8),
                    1 => b.insert(i, rng.gen()),
                    2 => {
                        b.remove(i);
                    }
                    _ => b[i] = rng.gen(),
                }
                if b.is_empty() {
                    break;
                }
            }
            let mut d = transparent::TransparentDeframer::new(fec);
            d.push(&b);
            while let Some(r) = d.next() {
                if let Ok((f, _)) = r {
                    assert_eq!(f, frame);
                }
            }
            let body = b.get(transparent::HEADER_LEN..).unwrap_or(&[]);
            if let Ok((f, _)) = Frame::decode(body, fec.as_ref()) {
                assert_eq!(f, frame);
            }
            let _ = ax25::UiFrame::parse(&b);
            let mut k = kiss::KissDeframer::new(64);
            k.push(&b);
            while k.next().is_some() {}
        }
    }

    fn kind() -> impl Strategy<Value = FrameKind> {
        prop_oneof![
            Just(FrameKind::Data),
            Just(FrameKind::Ack),
            Just(FrameKind::Control),
            (4u8..=255).prop_map(FrameKind::Unknown),
            Just(FrameKind::Unknown(0)),
        ]
    }

    fn frame() -> impl Strategy<Value = Frame> {
        (
            kind(),
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..600),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=64)),
            proptest::option::of((any::<u16>(), any::<u16>())),
        )
            .prop_map(|(kind, session, seq, payload, auth_tag, route)| Frame {
                kind,
                session,
                seq,
                payload,
                auth_tag,
                route: route.map(|(to, from)| Route { to, from }),
            })
    }

    fn fec() -> impl Strategy<Value = Option<FecParams>> {
        proptest::option::of((1usize..=16, 1usize..=200, any::<bool>()).prop_map(
            |(h, k, interleave)| FecParams {
                parity_bytes_per_block: 2 * h,
                block_data_len: k,
                interleave,
            },
        ))
    }

    proptest! {
        #![proptest_config(proptest_config(256))]

        #[test]
        fn round_trip(f in frame(), fec in fec()) {
            let bytes = f.encode(fec.as_ref()).unwrap();
            prop_assert_eq!(bytes.len(), f.encoded_len(fec.as_ref()));
            let (back, info) = Frame::decode(&bytes, fec.as_ref()).unwrap();
            prop_assert_eq!(back, f);
            prop_assert_eq!(info.corrected_symbols, 0);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), fec in fec()) {
            let _ = Frame::decode(&bytes, fec.as_ref());
        }
    }
}
