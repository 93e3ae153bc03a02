//! ARQ parameters and the airtime model the timeouts are computed from.
//!
//! Timing model of one transmission handed to the modem at `t`:
//! the channel is free after `turnaround` (the other side's radio switches
//! back to receive, squelch and PTT tail), the modem then waits for channel
//! access (p-persistence), keys up for `txdelay`, and sends the frames back
//! to back. The peer answers as soon as the last frame arrives.

use std::time::Duration;

use super::wire::{ACK_MAX, DATA_HEADER};
use crate::frame::hdlc::stuffed_bits;
use crate::profile::{Framing, Profile, AX25_UI_HEADER};

/// Bytes the frame layer adds around an ARQ payload before FEC: kind, flags,
/// session, seq, length and CRC-32C (src/frame), and room for the auth tag
/// with its length byte (docs/security.md): frames stay within the MTU and
/// their FEC blocks whether or not the session is authenticated.
pub const FRAME_OVERHEAD_ESTIMATE: usize = 12 + 1 + crate::auth::FRAME_TAG_LEN;
/// Bytes a transparent link adds per frame: 4-byte sync word and RS(6,2) length.
pub const TRANSPARENT_LINK_OVERHEAD: usize = 10;
/// Bytes HDLC adds per AX.25 frame on air besides the header: FCS and a flag.
pub const HDLC_OVERHEAD: usize = 3;
/// Frames the receiver keeps track of beyond the first missing one (bitmap 63 + 1).
pub const WINDOW: u16 = 64;

/// Acks sent per transmission; chosen by the measurements in docs/arq.md.
pub const ACK_COPIES: usize = 2;

/// Reed-Solomon geometry: `parity` bytes per `block` data bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecShape {
    /// Parity bytes per block.
    pub parity: usize,
    /// Most data bytes per block.
    pub block: usize,
}

/// Everything the ARQ needs to know about the channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ArqConfig {
    /// Modem bit rate on air, in bit/s.
    pub bitrate: u32,
    /// Time the modem keys up before the first frame (TXDELAY).
    pub txdelay: Duration,
    /// Time after a transmission until the other side's radio can hear
    /// again (switch back to receive, squelch, PTT tail).
    pub turnaround: Duration,
    /// p-persistence of the modem: each slot it keys up with probability
    /// (persist + 1) / 256, after at least one slot (Dire Wolf, chansim).
    pub persist: u8,
    /// Length of one p-persistence slot.
    pub slottime: Duration,
    /// Frame-layer bytes per frame before FEC.
    pub frame_overhead: usize,
    /// Reed-Solomon FEC on each frame; `None` without FEC.
    pub fec: Option<FecShape>,
    /// Link framing bytes per frame on air after FEC.
    pub link_overhead: usize,
    /// HDLC bit stuffing (KISS/AX.25 links) adds about one bit in 62 on random data.
    pub bit_stuffing: bool,
    /// Largest frame on air after FEC, before link framing.
    pub mtu: usize,
    /// Airtime budget of one transmission, in full-size data frames
    /// (smaller frames: more of them, up to the window).
    pub max_frames: usize,
    /// Copies of the ack in a transmission (1 or 2; the second goes last).
    pub ack_copies: usize,
    /// Consecutive unanswered transmissions before the link is declared lost.
    pub max_tries: u32,
    /// Longest extra wait `backoff` adds before a retry.
    pub backoff_cap: Duration,
    /// Slack added to every computed wait (latency of serial ports, TNC decode).
    pub margin: Duration,
    /// Retries wait a random extra (up to one exchange): on links whose modem
    /// does no random channel access (transparent radios), so that stations
    /// that collided do not retry in lockstep. A KISS TNC's p-persistence
    /// already draws at random.
    pub jitter: bool,
}

impl ArqConfig {
    /// The parameters of the channel a firmware profile describes.
    pub fn from_profile(p: &Profile) -> ArqConfig {
        let (link_overhead, bit_stuffing) = match p.framing {
            Framing::Kiss => (
                HDLC_OVERHEAD + if p.amateur { AX25_UI_HEADER } else { 0 },
                true,
            ),
            Framing::Transparent => (TRANSPARENT_LINK_OVERHEAD, false),
        };
        ArqConfig {
            bitrate: p.bitrate,
            txdelay: Duration::from_millis(p.txdelay_ms.into()),
            turnaround: Duration::from_millis(p.turnaround_ms.into()),
            persist: p.persist.min(255) as u8,
            slottime: Duration::from_millis(p.slottime_ms.into()),
            frame_overhead: FRAME_OVERHEAD_ESTIMATE
                + if p.routed() {
                    crate::frame::wire::ROUTE_LEN
                } else {
                    0
                },
            fec: p.fec.map(|f| FecShape {
                parity: f.parity as usize,
                block: f.block as usize,
            }),
            link_overhead,
            bit_stuffing,
            mtu: p.mtu,
            max_frames: p.max_frames_per_transmission as usize,
            ack_copies: ACK_COPIES,
            max_tries: p.retry.max_tries,
            backoff_cap: Duration::from_millis(p.retry.backoff_cap_ms.into()),
            margin: Duration::from_millis(p.margin_ms.into()),
            jitter: p.framing == Framing::Transparent && !p.ip,
        }
    }

    /// Frame bytes after FEC for an ARQ payload of `payload_len` bytes.
    pub fn frame_bytes(&self, payload_len: usize) -> usize {
        let n = self.frame_overhead + payload_len;
        match self.fec {
            Some(f) => n + f.parity * n.div_ceil(f.block),
            None => n,
        }
    }

    /// Bytes on air (link framing included) for an ARQ payload of `payload_len` bytes.
    pub fn air_bytes(&self, payload_len: usize) -> usize {
        let b = self.frame_bytes(payload_len) + self.link_overhead;
        if self.bit_stuffing {
            b + b.div_ceil(62)
        } else {
            b
        }
    }

    /// Time on air of `bytes` bytes.
    pub fn bytes_airtime(&self, bytes: usize) -> Duration {
        let bits = bytes as u64 * 8;
        let rate = u64::from(self.bitrate.max(1));
        Duration::from_micros((bits * 1_000_000).div_ceil(rate))
    }

    /// Time on air of one frame carrying an ARQ payload of `payload_len` bytes.
    pub fn frame_airtime(&self, payload_len: usize) -> Duration {
        self.bytes_airtime(self.air_bytes(payload_len))
    }

    /// Shortest time on air of a frame carrying an ARQ payload of
    /// `payload_len` bytes: no auth tag (`frame_overhead` keeps room for one),
    /// no bit stuffing. "Our transmission must be over by now" is judged by
    /// this: an overestimate takes the peer's prompt answer for a modem that
    /// held our frames back, and the next wait grows by a whole transmission.
    pub fn frame_airtime_floor(&self, payload_len: usize) -> Duration {
        let n = self
            .frame_overhead
            .saturating_sub(1 + crate::auth::FRAME_TAG_LEN)
            + payload_len;
        let parity = self.fec.map_or(0, |f| f.parity * n.div_ceil(f.block));
        self.bytes_airtime(n + parity + self.link_overhead)
    }

    /// Time on air of one frame carrying exactly `payload`: on HDLC links
    /// the stuffed bits of the payload are counted (data full of ones costs
    /// up to a fifth more), the rest is assumed worst case.
    pub fn frame_airtime_of(&self, payload: &[u8]) -> Duration {
        if !self.bit_stuffing {
            return self.frame_airtime(payload.len());
        }
        let framed = self.frame_bytes(payload.len()) + self.link_overhead;
        let other_bits = (framed - payload.len()) as u64 * 8;
        let bits = framed as u64 * 8 + stuffed_bits(payload) + other_bits.div_ceil(5);
        let rate = u64::from(self.bitrate.max(1));
        Duration::from_micros((bits * 1_000_000).div_ceil(rate))
    }

    /// Largest message one data frame carries within the MTU.
    pub fn max_message(&self) -> usize {
        let mut lo = 0usize;
        let mut hi = self.mtu;
        // frame_bytes is monotone: binary search the largest fitting message.
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if self.frame_bytes(DATA_HEADER + mid) <= self.mtu {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// Data airtime one transmission may carry.
    pub fn transmission_budget(&self) -> Duration {
        self.frame_airtime(DATA_HEADER + self.max_message()) * self.max_frames as u32
    }

    /// Allowance for p-persistent channel access before keying up: one
    /// slot, plus three times the mean of the further (255 - p) / (p + 1).
    pub fn channel_access(&self) -> Duration {
        let p = u32::from(self.persist);
        let extra_x100 = (255 - p) * 300 / (p + 1);
        self.slottime + self.slottime * extra_x100 / 100
    }

    /// From handing a transmission to the modem until the peer can hear its
    /// first bit: turnaround, channel access, TXDELAY.
    pub fn key_up(&self) -> Duration {
        self.turnaround + self.channel_access() + self.txdelay
    }

    /// Shortest possible key-up: turnaround, one slot, TXDELAY. Frames of
    /// the peer heard earlier than this after we transmitted mean the modem
    /// has not sent ours yet.
    pub fn min_key_up(&self) -> Duration {
        self.turnaround + self.slottime + self.txdelay
    }

    /// Slack a receiver waits past the announced end of a transmission whose
    /// last frame it missed, before it answers.
    pub fn rx_slack(&self) -> Duration {
        self.margin / 2
    }

    /// How long after the end of our transmission the peer's answer must
    /// have started to arrive: its fallback slack, key-up, an ack, and the
    /// first data frame in case the ack itself was lost (answering then
    /// would collide with the peer's data).
    pub fn reply_wait(&self) -> Duration {
        self.rx_slack()
            + self.key_up()
            + self.frame_airtime(ACK_MAX)
            + self.frame_airtime(DATA_HEADER + self.max_message())
            + self.margin
    }

    /// Cost of one extra exchange without data: two key-ups and an ack.
    pub fn exchange_overhead(&self) -> Duration {
        self.key_up() * 2 + self.frame_airtime(ACK_MAX)
    }

    /// Extra wait before retry number `attempt` (1 = first retry): doubles
    /// from one exchange overhead, capped. Pure function of the attempt.
    pub fn backoff(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let unit = self.exchange_overhead();
        let factor = 1u32 << (attempt - 1).min(20);
        unit.saturating_mul(factor).min(self.backoff_cap)
    }
}

/// Bytes a `Chunk` message adds to its slice of the bundle (type and offset).
const CHUNK_HEADER: usize = 4;
/// A typical control message (Hello with a short vector, BundleStart, Applied).
const CONTROL_MESSAGE: usize = 64;
/// Control transmissions of a session besides the bundles: the two Hellos, the
/// last Applied with Done, and the initiator's final ack.
const CONTROL_TRANSMISSIONS: u32 = 4;

impl ArqConfig {
    /// One transmission with an ack (as every transmission after the first
    /// starts) and frames of `frame_airtime` in all: TXDELAY, acks, frames.
    fn transmission(&self, frames_airtime: Duration) -> Duration {
        self.txdelay + self.frame_airtime(ACK_MAX) * self.ack_copies as u32 + frames_airtime
    }

    /// Estimated keyed time, both stations together, of moving one bundle of
    /// `bytes` on a clean channel: its BundleStart and chunks in transmissions
    /// of `max_frames`, each answered by an ack, and the receiver's Applied.
    pub fn bundle_airtime(&self, bytes: usize) -> Duration {
        if bytes == 0 {
            return self.transmission(self.frame_airtime(DATA_HEADER + 2));
        }
        let room = self.max_message().saturating_sub(CHUNK_HEADER).max(1);
        let chunks = bytes.div_ceil(room);
        let last = bytes - (chunks - 1) * room;
        let frames = chunks + 1;
        let data = self.frame_airtime(DATA_HEADER + CONTROL_MESSAGE / 2)
            + self.frame_airtime(DATA_HEADER + CHUNK_HEADER + room) * (chunks - 1) as u32
            + self.frame_airtime(DATA_HEADER + CHUNK_HEADER + last);
        let tx = frames.div_ceil(self.max_frames.max(1)) as u32;
        // The sender's turns, the receiver's ack turns, then its Applied.
        self.transmission(Duration::ZERO) * tx
            + data
            + self.transmission(Duration::ZERO) * tx
            + self.frame_airtime(DATA_HEADER + CONTROL_MESSAGE / 2)
    }

    /// Chance that a frame carrying an ARQ payload of `payload_len` bytes is
    /// lost on a channel with bit error rate `ber` that also loses `frame_loss`
    /// of all frames whole: Reed-Solomon repairs up to parity / 2 byte errors
    /// per block, so a frame is lost when any block has more.
    pub fn frame_loss(&self, payload_len: usize, ber: f64, frame_loss: f64) -> f64 {
        let q = 1.0 - (1.0 - ber).powi(8);
        if q >= 1.0 || frame_loss >= 1.0 {
            return 1.0;
        }
        let n = self.frame_bytes(payload_len);
        let delivered = match self.fec {
            Some(f) => {
                let mut ok = 1.0;
                let mut left = n;
                while left > 0 {
                    let data = (left - f.parity.min(left)).min(f.block).max(1);
                    let block = (data + f.parity).min(left);
                    left -= block;
                    // P(at most parity / 2 of `block` bytes in error).
                    let t = f.parity / 2;
                    let mut term = (1.0 - q).powi(block as i32);
                    let mut sum = term;
                    for i in 1..=t.min(block) {
                        term *= (block - i + 1) as f64 / i as f64 * q
                            / (1.0 - q).max(f64::MIN_POSITIVE);
                        sum += term;
                    }
                    ok *= sum.min(1.0);
                }
                ok
            }
            None => (1.0 - q).powi((n + self.link_overhead) as i32),
        };
        (1.0 - (1.0 - frame_loss) * delivered).clamp(0.0, 1.0)
    }

    /// `session_airtime` on a channel that loses frames (`frame_loss`) and
    /// flips bits (`ber`): lost data frames go again, and each lost
    /// transmission or ack costs another turn each way.
    pub fn session_airtime_on(&self, bundles: &[usize], ber: f64, frame_loss: f64) -> Duration {
        let full = self.max_message();
        let p_data = self
            .frame_loss(DATA_HEADER + full, ber, frame_loss)
            .min(0.9);
        let p_ack = self.frame_loss(ACK_MAX, ber, frame_loss).min(0.9);
        let clean = self.session_airtime(bundles);
        // Data frames are resent 1 / (1 - p) times on average; a turn is
        // repeated when its acks are all lost.
        let turn_loss = p_ack.powi(self.ack_copies as i32);
        let turns = 1.0 / (1.0 - turn_loss);
        clean.mul_f64(turns / (1.0 - p_data))
    }

    /// The largest bundle whose `bundle_airtime` fits in `airtime` (0 when
    /// not even an empty one does).
    pub fn max_bundle_within(&self, airtime: Duration) -> u64 {
        if self.bundle_airtime(1) > airtime {
            return 0;
        }
        let (mut lo, mut hi) = (1u64, 1u64 << 32);
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if self.bundle_airtime(mid as usize) <= airtime {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Estimated keyed time of a whole session on a clean channel that moves
    /// bundles of these sizes (either way; an empty direction costs a
    /// NoBundle): the control exchange plus each bundle.
    pub fn session_airtime(&self, bundles: &[usize]) -> Duration {
        self.transmission(self.frame_airtime(DATA_HEADER + CONTROL_MESSAGE)) * CONTROL_TRANSMISSIONS
            + bundles
                .iter()
                .map(|&b| self.bundle_airtime(b))
                .sum::<Duration>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile's ARQ parameters; the frame sizes below are written for
    /// frames without a route (the sim profiles carry one: `routes_are_counted`).
    fn cfg(name: &str) -> ArqConfig {
        let mut c = ArqConfig::from_profile(&Profile::load(name).unwrap());
        c.frame_overhead = FRAME_OVERHEAD_ESTIMATE;
        c
    }

    #[test]
    fn routes_are_counted() {
        let routed = ArqConfig::from_profile(&Profile::load("sim-transparent-9600").unwrap());
        assert_eq!(
            routed.frame_overhead,
            FRAME_OVERHEAD_ESTIMATE + crate::frame::wire::ROUTE_LEN
        );
        let ax25 = ArqConfig::from_profile(&Profile::load("direwolf-1200").unwrap());
        assert_eq!(ax25.frame_overhead, FRAME_OVERHEAD_ESTIMATE);
    }

    #[test]
    fn sizes_and_airtime() {
        let k = cfg("sim-kiss-1200");
        // 21 + 100 = 121 frame bytes, +3 HDLC = 124, +2 stuffing = 126 bytes.
        assert_eq!(k.frame_bytes(100), 121);
        assert_eq!(k.air_bytes(100), 126);
        assert_eq!(k.frame_airtime(100), Duration::from_micros(840_000));
        assert_eq!(k.frame_bytes(DATA_HEADER + k.max_message()), k.mtu);

        let t = cfg("sim-transparent-9600");
        // 21 + 239 = 260 bytes -> 2 RS blocks -> +32 parity.
        assert_eq!(t.frame_bytes(239), 292);
        assert_eq!(t.frame_bytes(218), 255);
        assert!(t.frame_bytes(DATA_HEADER + t.max_message()) <= t.mtu);
        assert!(t.frame_bytes(DATA_HEADER + t.max_message() + 1) > t.mtu);
        assert_eq!(t.channel_access(), Duration::ZERO);

        // The figures quoted in docs/arq.md.
        assert_eq!(k.max_message(), 488);
        assert_eq!(t.max_message(), 932);
        // Dire Wolf's PERSIST 63, SLOTTIME 100 ms: one slot, then 3 more on
        // average; allow 1 + 9.
        let dw = cfg("direwolf-1200");
        assert_eq!(dw.channel_access(), Duration::from_millis(1000));
        let once = ArqConfig {
            persist: 255,
            ..dw.clone()
        };
        assert_eq!(once.channel_access(), Duration::from_millis(100));
        assert_eq!(dw.link_overhead, HDLC_OVERHEAD + AX25_UI_HEADER);
    }

    #[test]
    fn stuffing_is_counted_from_the_payload() {
        let k = cfg("sim-kiss-1200");
        // 100 zero bytes: 124 bytes + 24 x 8 / 5 worst-case bits for the rest.
        assert_eq!(
            k.frame_airtime_of(&[0; 100]),
            Duration::from_micros(((124 * 8 + 39) * 1_000_000u64).div_ceil(1200))
        );
        assert!(k.frame_airtime_of(&[0xFF; 100]) > k.frame_airtime(100));
        let t = cfg("sim-transparent-9600");
        assert_eq!(t.frame_airtime_of(&[0xFF; 100]), t.frame_airtime(100));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let k = cfg("sim-kiss-1200");
        let unit = k.exchange_overhead();
        assert_eq!(k.backoff(0), Duration::ZERO);
        assert_eq!(k.backoff(1), unit);
        assert_eq!(k.backoff(2), unit * 2);
        assert_eq!(k.backoff(3), unit * 4);
        assert_eq!(k.backoff(40), k.backoff_cap);
    }

    #[test]
    fn the_airtime_estimate_grows_with_bytes_and_loss() {
        let load = |n| ArqConfig::from_profile(&crate::profile::Profile::load(n).unwrap());
        let k = load("sim-kiss-1200");
        assert!(k.session_airtime(&[10_000]) > k.session_airtime(&[1_000]));
        assert!(k.session_airtime(&[1_000]) > k.session_airtime(&[]));
        assert_eq!(k.frame_loss(100, 0.0, 0.0), 0.0);
        assert!((k.frame_loss(100, 0.0, 0.1) - 0.1).abs() < 1e-12);
        let t = load("sim-transparent-9600");
        assert!(
            t.frame_loss(200, 1e-4, 0.0) < 1e-6,
            "RS repairs scattered errors"
        );
        assert!(
            k.frame_loss(500, 1e-4, 0.0) > 0.3,
            "a KISS frame has no FEC"
        );
        assert!(k.session_airtime_on(&[5000], 0.0, 0.2) > k.session_airtime(&[5000]));
    }
}
