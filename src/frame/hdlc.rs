//! What HDLC (the AX.25 TNC's framing) adds on air: the 16-bit FCS, a zero stuffed after
//! every five ones, and a closing flag. One model, used by the ARQ's airtime estimates and
//! by the channel simulator.

const FCS: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_SDLC);

/// Zero bits HDLC inserts after every five ones, bytes sent LSB first.
pub fn stuffed_bits(bytes: &[u8]) -> u64 {
    stuffed(bytes.iter().copied())
}

/// Bits one frame occupies on air: the frame and its FCS, LSB first and stuffed, then one
/// flag. TXDELAY and turnaround are the caller's to add.
pub fn frame_bits(frame: &[u8]) -> u64 {
    let fcs = FCS.checksum(frame).to_le_bytes();
    let bytes = frame.len() as u64 + fcs.len() as u64;
    bytes * 8 + stuffed(frame.iter().chain(&fcs).copied()) + 8
}

fn stuffed(bytes: impl Iterator<Item = u8>) -> u64 {
    let mut ones = 0;
    let mut stuffed = 0;
    for b in bytes {
        for i in 0..8 {
            if b >> i & 1 == 1 {
                ones += 1;
                if ones == 5 {
                    stuffed += 1;
                    ones = 0;
                }
            } else {
                ones = 0;
            }
        }
    }
    stuffed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_counts_runs_of_five_ones_across_bytes() {
        assert_eq!(stuffed_bits(&[0x00; 10]), 0);
        assert_eq!(stuffed_bits(&[0xFF]), 1);
        // 16 ones: stuffed after the 5th, 10th and 15th.
        assert_eq!(stuffed_bits(&[0xFF, 0xFF]), 3);
        // 0x3F = six ones LSB first, then two zeros: one stuffed bit per byte.
        assert_eq!(stuffed_bits(&[0x3F; 4]), 4);
    }

    #[test]
    fn frame_bits_count_fcs_flag_and_stuffing() {
        let zeros = frame_bits(&[0u8; 20]);
        let ones = frame_bits(&[0xFF; 20]);
        // The FCS of 20 zero bytes stuffs at most 3 bits.
        assert!((22 * 8 + 8..=22 * 8 + 8 + 3).contains(&zeros));
        // 160 ones get 32 stuffed zeros.
        assert!(ones >= zeros + 32 - 3);
    }
}
