//! Reed-Solomon FEC over GF(2^8) (the `reed-solomon` crate, RS(255,k) shortened),
//! with optional symbol interleaving across the blocks of one frame.
//!
//! A frame of `len` bytes is cut into `n = ceil(len / block_data_len)` blocks whose
//! sizes differ by at most one byte (the first `len % n` blocks are one longer), each
//! followed by `parity_bytes_per_block` parity bytes. Without interleaving the
//! codewords are sent one after another; with it, byte `j` of every codeword is sent
//! before byte `j + 1` of any, so a burst of `b` bytes costs each block about `b / n`.
//! The encoded length alone tells the receiver `len`, so no extra field is needed.

use reed_solomon::{Decoder, Encoder};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest parity count accepted. The crate works on 256-entry polynomials and
/// multiplies syndromes by locators, so parity above ~127 could overflow inside it.
pub const MAX_PARITY: usize = 64;
/// A GF(2^8) RS codeword holds at most 255 symbols.
pub const MAX_CODEWORD: usize = 255;

/// Parity strength from the modem profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FecParams {
    /// Parity bytes per RS block; corrects half as many byte errors. Even, 2..=64.
    pub parity_bytes_per_block: usize,
    /// Most data bytes per block; data + parity <= 255.
    pub block_data_len: usize,
    /// Interleave symbols across the blocks of a frame (pays against bursts).
    pub interleave: bool,
}

/// FEC errors: bad parameters are a local mistake, the rest are bad bytes from the air.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FecError {
    /// The parameters break a limit of `FecParams::validate`.
    #[error("invalid FEC parameters: {0}")]
    BadParams(&'static str),
    /// No data length encodes to `len` bytes with these parameters (or the data is empty).
    #[error("{len} bytes cannot be an RS-encoded frame with these FEC parameters")]
    BadLength {
        /// Length of the encoded bytes.
        len: usize,
    },
    /// A block has more byte errors than half its parity.
    #[error("RS block {block} has more errors than its parity can correct")]
    Uncorrectable {
        /// Index of the block in the frame.
        block: usize,
    },
}

impl FecParams {
    /// Checks the limits under which the `reed-solomon` crate cannot panic.
    pub fn validate(&self) -> Result<(), FecError> {
        let p = self.parity_bytes_per_block;
        if !(2..=MAX_PARITY).contains(&p) {
            return Err(FecError::BadParams("parity_bytes_per_block must be 2..=64"));
        }
        if p % 2 != 0 {
            return Err(FecError::BadParams("parity_bytes_per_block must be even"));
        }
        if self.block_data_len == 0 {
            return Err(FecError::BadParams("block_data_len must be at least 1"));
        }
        if self.block_data_len + p > MAX_CODEWORD {
            return Err(FecError::BadParams(
                "block_data_len + parity_bytes_per_block must be <= 255",
            ));
        }
        Ok(())
    }

    /// Byte errors each block can correct.
    pub fn correctable_per_block(&self) -> usize {
        self.parity_bytes_per_block / 2
    }

    /// Number of blocks for `len` data bytes.
    pub fn blocks_for(&self, len: usize) -> usize {
        len.div_ceil(self.block_data_len).max(1)
    }

    /// Exact encoded length of `len` data bytes.
    pub fn encoded_len(&self, len: usize) -> usize {
        len + self.blocks_for(len) * self.parity_bytes_per_block
    }

    /// Inverse of [`encoded_len`](Self::encoded_len): the data length behind an
    /// encoded length, if any.
    pub fn data_len(&self, encoded: usize) -> Option<usize> {
        let p = self.parity_bytes_per_block;
        (1..=encoded / p).find_map(|n| {
            let len = encoded - n * p;
            (len > 0 && self.blocks_for(len) == n).then_some(len)
        })
    }
}

/// Data length of each block for a frame of `len` bytes.
fn block_lens(params: &FecParams, len: usize) -> Vec<usize> {
    let n = params.blocks_for(len);
    let (base, extra) = (len / n, len % n);
    (0..n).map(|i| base + usize::from(i < extra)).collect()
}

/// Transmission order: (block, index in codeword) for each sent byte.
fn send_order(cw_lens: &[usize], interleave: bool) -> Vec<(usize, usize)> {
    let mut order = Vec::with_capacity(cw_lens.iter().sum());
    if interleave {
        let longest = cw_lens.iter().copied().max().unwrap_or(0);
        for j in 0..longest {
            for (b, &l) in cw_lens.iter().enumerate() {
                if j < l {
                    order.push((b, j));
                }
            }
        }
    } else {
        for (b, &l) in cw_lens.iter().enumerate() {
            order.extend((0..l).map(|j| (b, j)));
        }
    }
    order
}

/// Appends RS parity to `data` (and interleaves if asked).
pub fn encode(data: &[u8], params: &FecParams) -> Result<Vec<u8>, FecError> {
    params.validate()?;
    if data.is_empty() {
        return Err(FecError::BadLength { len: 0 });
    }
    let enc = Encoder::new(params.parity_bytes_per_block);
    let mut codewords = Vec::new();
    let mut at = 0;
    for l in block_lens(params, data.len()) {
        codewords.push(enc.encode(&data[at..at + l]).to_vec());
        at += l;
    }
    let lens: Vec<usize> = codewords.iter().map(Vec::len).collect();
    Ok(send_order(&lens, params.interleave)
        .into_iter()
        .map(|(b, j)| codewords[b][j])
        .collect())
}

/// Corrects and strips RS parity. Returns the data and the number of corrected bytes.
pub fn decode(encoded: &[u8], params: &FecParams) -> Result<(Vec<u8>, usize), FecError> {
    params.validate()?;
    let len = params
        .data_len(encoded.len())
        .ok_or(FecError::BadLength { len: encoded.len() })?;
    let p = params.parity_bytes_per_block;
    let lens: Vec<usize> = block_lens(params, len).iter().map(|l| l + p).collect();
    let mut codewords: Vec<Vec<u8>> = lens.iter().map(|&l| vec![0; l]).collect();
    for (&byte, (b, j)) in encoded.iter().zip(send_order(&lens, params.interleave)) {
        codewords[b][j] = byte;
    }
    let dec = Decoder::new(p);
    let mut out = Vec::with_capacity(len);
    let mut corrected = 0;
    for (block, cw) in codewords.iter().enumerate() {
        // Lengths were checked by validate(): 2 <= p < cw.len() <= 255.
        let (buf, fixed) = dec
            .correct_err_count(cw, None)
            .map_err(|_| FecError::Uncorrectable { block })?;
        out.extend_from_slice(buf.data());
        corrected += fixed;
    }
    Ok((out, corrected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn params(p: usize, k: usize, interleave: bool) -> FecParams {
        FecParams {
            parity_bytes_per_block: p,
            block_data_len: k,
            interleave,
        }
    }

    #[test]
    fn literal_block() {
        // RS with 4 parity over [1,2,3,4]: values from the crate's own generator.
        let p = params(4, 16, false);
        let enc = encode(&[1, 2, 3, 4], &p).unwrap();
        assert_eq!(enc.len(), 8);
        assert_eq!(&enc[..4], &[1, 2, 3, 4]);
        let expected = Encoder::new(4).encode(&[1, 2, 3, 4]).to_vec();
        assert_eq!(enc, expected);
        assert_eq!(decode(&enc, &p).unwrap(), (vec![1, 2, 3, 4], 0));
    }

    #[test]
    fn bad_params_rejected() {
        for bad in [
            params(0, 10, false),
            params(3, 10, false),
            params(66, 10, false),
            params(8, 0, false),
            params(8, 248, false),
        ] {
            assert!(
                matches!(bad.validate(), Err(FecError::BadParams(_))),
                "{bad:?}"
            );
            assert!(encode(&[1], &bad).is_err());
            assert!(decode(&[0; 40], &bad).is_err());
        }
        assert!(params(8, 247, false).validate().is_ok());
    }

    #[test]
    fn impossible_lengths_rejected() {
        let p = params(8, 10, false);
        // 0..=8 bytes cannot hold even one data byte plus parity.
        for len in 0..=8 {
            assert_eq!(
                decode(&vec![0; len], &p),
                Err(FecError::BadLength { len }),
                "{len}"
            );
        }
        // 19 bytes = 11 data + 8 parity, but 11 data bytes need two blocks.
        assert_eq!(p.data_len(19), None);
        assert_eq!(p.data_len(18), Some(10));
        assert_eq!(p.data_len(27), Some(11));
    }

    #[test]
    fn data_len_inverts_encoded_len() {
        for p in [
            params(2, 1, false),
            params(8, 10, true),
            params(32, 223, false),
        ] {
            for len in 1..600 {
                assert_eq!(p.data_len(p.encoded_len(len)), Some(len), "{p:?} {len}");
            }
        }
    }

    #[test]
    fn uneven_blocks_interleaved_round_trip() {
        let p = params(6, 10, true);
        let data: Vec<u8> = (0..23).collect();
        let enc = encode(&data, &p).unwrap();
        // 23 bytes -> blocks of 8, 8, 7 data bytes.
        assert_eq!(enc.len(), 23 + 3 * 6);
        // Column order: first byte of each block first.
        assert_eq!(&enc[..3], &[0, 8, 16]);
        assert_eq!(decode(&enc, &p).unwrap(), (data, 0));
    }

    /// A burst of 8 bytes hits one block in plain order (t = 4 -> fails) but only
    /// 2-3 bytes per block when interleaved over 3 blocks (corrected).
    #[test]
    fn burst_survives_interleaving_only() {
        let data: Vec<u8> = (0..60u8).map(|i| i.wrapping_mul(37)).collect();
        let burst = |mut v: Vec<u8>| {
            for b in &mut v[10..18] {
                *b ^= 0xA5;
            }
            v
        };
        let plain = params(8, 20, false);
        let hit = burst(encode(&data, &plain).unwrap());
        assert_eq!(
            decode(&hit, &plain),
            Err(FecError::Uncorrectable { block: 0 })
        );

        let inter = params(8, 20, true);
        let hit = burst(encode(&data, &inter).unwrap());
        assert_eq!(decode(&hit, &inter).unwrap(), (data, 8));
    }

    #[test]
    fn corrects_up_to_t_per_block() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let p = params(8, 50, false);
        for _ in 0..200 {
            let len = rng.gen_range(1..300);
            let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let mut enc = encode(&data, &p).unwrap();
            let cw = 8 + data.len().div_ceil(p.blocks_for(len));
            // 4 errors in the first block (its codeword is the first `cw` bytes).
            let n = cw.min(4);
            for i in rand::seq::index::sample(&mut rng, cw.min(enc.len()), n) {
                enc[i] ^= rng.gen_range(1..=255);
            }
            assert_eq!(decode(&enc, &p).unwrap().0, data);
        }
    }

    proptest! {
        #![proptest_config(crate::frame::proptest_config(256))]

        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 1..700),
                      half in 1usize..=16, k in 1usize..=200, interleave: bool) {
            let p = params(half * 2, k.min(255 - half * 2), interleave);
            let enc = encode(&data, &p).unwrap();
            prop_assert_eq!(enc.len(), p.encoded_len(data.len()));
            prop_assert_eq!(decode(&enc, &p).unwrap(), (data, 0));
        }

        /// Arbitrary bytes never panic the decoder (the crate panics on bad lengths).
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                half in 1usize..=32, k in 1usize..=253, interleave: bool) {
            let p = params(half * 2, k, interleave);
            let _ = decode(&bytes, &p);
        }
    }
}
