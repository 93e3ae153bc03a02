//! AX.25 UI frames (without the FCS, which the TNC adds and checks) wrapping a
//! radiosync frame on amateur profiles.
//!
//! ```text
//! 0..7    destination  6 callsign chars << 1 (space padded), SSID byte
//! 7..14   source       same; extension bit set on the last address
//! [14..   digipeaters  7 bytes each, up to 8; parsed and kept, never sent by us]
//! n       control      0x03 (UI, P/F = 0)
//! n+1     PID          0xBB (radiosync; see RADIOSYNC_PID)
//! n+2..   info         the radiosync frame
//! ```

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// UI frame control byte, poll/final bit clear.
pub const CONTROL_UI: u8 = 0x03;
/// Our PID. Not 0xF0: Dire Wolf treats UI + 0xF0 as APRS (digipeating, IGate, and the
/// 100-frame queue limit). Not 0xFF (escape to a second PID byte), not a PID that another
/// stack would try to parse (0xCC IP, 0xCD ARP, 0xCF NET/ROM, 0xCE FlexNet, 0x08
/// segmentation, 0x06/0x07 TCP/IP), and not in the yy01yyyy / yy10yyyy ranges AX.25 2.2
/// reserves for AX.25 layer 3. Dire Wolf passes any non-APRS UI frame through unchanged.
pub const RADIOSYNC_PID: u8 = 0xBB;
/// Bytes of one address: 6 shifted callsign characters and the SSID byte.
pub const ADDR_LEN: usize = 7;
/// Most digipeater addresses after source and destination.
pub const MAX_DIGIPEATERS: usize = 8;
/// Two addresses, control, PID.
pub const MIN_HEADER_LEN: usize = 2 * ADDR_LEN + 2;

/// Why bytes are not an AX.25 UI frame for us, or a callsign is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Ax25Error {
    /// Text that is not a valid callsign.
    #[error("callsign {0:?} is not 1-6 letters/digits with an optional -SSID 0..15")]
    BadCallsign(String),
    /// Fewer bytes than the header needs (the length given).
    #[error("AX.25 frame of {0} bytes is shorter than its header")]
    Truncated(usize),
    /// Fewer than two addresses, or no end marker within 2 + 8 addresses.
    #[error("AX.25 address field has more than 8 digipeaters or no end marker")]
    BadAddressField,
    /// An address byte that is not a shifted A-Z, 0-9 or padding space.
    #[error("AX.25 address byte {0:#04x} does not decode to a callsign character")]
    BadAddressChar(u8),
    /// The control byte is not UI.
    #[error("AX.25 control {0:#04x} is not a UI frame")]
    NotUi(u8),
    /// A UI frame with another protocol's PID.
    #[error("AX.25 PID {0:#04x} is not radiosync's")]
    WrongPid(u8),
}

/// An amateur callsign with SSID: 1-6 upper-case letters/digits, SSID 0..=15.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Callsign {
    call: String,
    ssid: u8,
}

impl Callsign {
    /// Upper-cases `call`; fails unless it is 1-6 letters/digits and `ssid` is 0..=15.
    pub fn new(call: &str, ssid: u8) -> Result<Callsign, Ax25Error> {
        let up = call.to_ascii_uppercase();
        let ok = (1..=6).contains(&up.len())
            && up.bytes().all(|b| b.is_ascii_alphanumeric())
            && ssid <= 15;
        if ok {
            Ok(Callsign { call: up, ssid })
        } else {
            Err(Ax25Error::BadCallsign(format!("{call}-{ssid}")))
        }
    }

    /// The callsign without SSID, upper case.
    pub fn call(&self) -> &str {
        &self.call
    }

    /// The SSID, 0..=15.
    pub fn ssid(&self) -> u8 {
        self.ssid
    }

    /// 7 address bytes; `high` sets bit 7 (C or H bit), `last` the extension bit.
    fn emit(&self, out: &mut Vec<u8>, high: bool, last: bool) {
        let mut chars = [b' '; 6];
        chars[..self.call.len()].copy_from_slice(self.call.as_bytes());
        out.extend(chars.iter().map(|c| c << 1));
        out.push(u8::from(high) << 7 | 0x60 | self.ssid << 1 | u8::from(last));
    }

    fn parse(addr: &[u8]) -> Result<Callsign, Ax25Error> {
        let mut call = String::new();
        let mut ended = false;
        for &b in &addr[..6] {
            let c = b >> 1;
            if b & 1 != 0 {
                return Err(Ax25Error::BadAddressChar(b));
            }
            if c == b' ' {
                ended = true;
            } else if c.is_ascii_uppercase() || c.is_ascii_digit() {
                if ended {
                    // A space inside a callsign.
                    return Err(Ax25Error::BadAddressChar(b));
                }
                call.push(c as char);
            } else {
                return Err(Ax25Error::BadAddressChar(b));
            }
        }
        if call.is_empty() {
            return Err(Ax25Error::BadAddressChar(addr[0]));
        }
        Callsign::new(&call, (addr[6] >> 1) & 0x0F)
    }
}

impl FromStr for Callsign {
    type Err = Ax25Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || Ax25Error::BadCallsign(s.to_string());
        match s.split_once('-') {
            None => Callsign::new(s, 0).map_err(|_| bad()),
            Some((call, ssid)) => {
                // "-0" and "-15" are fine; "-+1", "-01" and "-" are not.
                let valid = !ssid.is_empty()
                    && ssid.bytes().all(|b| b.is_ascii_digit())
                    && (ssid == "0" || !ssid.starts_with('0'));
                let n: u8 = ssid.parse().ok().filter(|_| valid).ok_or_else(bad)?;
                Callsign::new(call, n).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for Callsign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ssid == 0 {
            write!(f, "{}", self.call)
        } else {
            write!(f, "{}-{}", self.call, self.ssid)
        }
    }
}

/// An AX.25 UI frame carrying a radiosync frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiFrame<'a> {
    /// The station the frame is for.
    pub destination: Callsign,
    /// The station that sent it.
    pub source: Callsign,
    /// Digipeater path, at most `MAX_DIGIPEATERS`; empty on frames we build.
    pub digipeaters: Vec<Callsign>,
    /// Protocol identifier; `RADIOSYNC_PID` on ours.
    pub pid: u8,
    /// The information field: the radiosync frame.
    pub info: &'a [u8],
}

impl<'a> UiFrame<'a> {
    /// A UI frame without digipeaters, with radiosync's PID.
    pub fn new(destination: Callsign, source: Callsign, info: &'a [u8]) -> UiFrame<'a> {
        UiFrame {
            destination,
            source,
            digipeaters: Vec::new(),
            pid: RADIOSYNC_PID,
            info,
        }
    }

    /// Parses any UI frame; check `pid` (or use [`parse_radiosync`]) before trusting `info`.
    pub fn parse(bytes: &'a [u8]) -> Result<UiFrame<'a>, Ax25Error> {
        if bytes.len() < MIN_HEADER_LEN {
            return Err(Ax25Error::Truncated(bytes.len()));
        }
        // Address field ends at the first byte with the extension bit set.
        let mut addrs = Vec::new();
        let mut at = 0;
        loop {
            let addr = bytes
                .get(at..at + ADDR_LEN)
                .ok_or(Ax25Error::Truncated(bytes.len()))?;
            addrs.push(Callsign::parse(addr)?);
            at += ADDR_LEN;
            if addr[6] & 1 != 0 {
                break;
            }
            if addrs.len() == 2 + MAX_DIGIPEATERS {
                return Err(Ax25Error::BadAddressField);
            }
        }
        if addrs.len() < 2 {
            return Err(Ax25Error::BadAddressField);
        }
        let (&control, &pid) = match bytes.get(at..at + 2) {
            Some([c, p]) => (c, p),
            _ => return Err(Ax25Error::Truncated(bytes.len())),
        };
        // Accept P/F set or clear: bit 4 is the poll/final bit.
        if control & !0x10 != CONTROL_UI {
            return Err(Ax25Error::NotUi(control));
        }
        let mut addrs = addrs.into_iter();
        let (Some(destination), Some(source)) = (addrs.next(), addrs.next()) else {
            return Err(Ax25Error::BadAddressField);
        };
        Ok(UiFrame {
            destination,
            source,
            digipeaters: addrs.collect(),
            pid,
            info: &bytes[at + 2..],
        })
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        (2 + self.digipeaters.len()) * ADDR_LEN + 2 + self.info.len()
    }

    /// AX.25 v2 command frame: C bit set in the destination, clear in the source.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(self.buffer_len());
        let n = self.digipeaters.len();
        self.destination.emit(out, true, false);
        self.source.emit(out, false, n == 0);
        for (i, d) in self.digipeaters.iter().enumerate() {
            d.emit(out, false, i + 1 == n);
        }
        out.push(CONTROL_UI);
        out.push(self.pid);
        out.extend_from_slice(self.info);
    }

    /// The frame's bytes (see `emit`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.emit(&mut v);
        v
    }
}

/// Parses a UI frame and insists on radiosync's PID.
pub fn parse_radiosync(bytes: &[u8]) -> Result<UiFrame<'_>, Ax25Error> {
    let ui = UiFrame::parse(bytes)?;
    if ui.pid != RADIOSYNC_PID {
        return Err(Ax25Error::WrongPid(ui.pid));
    }
    Ok(ui)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn call(s: &str) -> Callsign {
        s.parse().unwrap()
    }

    #[test]
    fn callsign_validation() {
        assert_eq!(call("n0call-7").to_string(), "N0CALL-7");
        assert_eq!(call("W1AW").ssid(), 0);
        assert_eq!(call("K1A-15").ssid(), 15);
        assert_eq!(call("K1A-0").to_string(), "K1A");
        for bad in [
            "",
            "-1",
            "TOOLONG1",
            "N0CALL-16",
            "N0 CAL",
            "N0CALL-",
            "N0-01",
            "N0-+1",
            "ÄB1",
            "A-1-2",
        ] {
            assert!(bad.parse::<Callsign>().is_err(), "{bad:?}");
        }
    }

    /// N0CALL-1 -> RSYNC, info "x": bytes computed by hand from the AX.25 2.2 layout.
    const LITERAL: [u8; 17] = [
        b'R' << 1,
        b'S' << 1,
        b'Y' << 1,
        b'N' << 1,
        b'C' << 1,
        b' ' << 1,
        0xE0, // dest, C=1, SSID 0
        b'N' << 1,
        b'0' << 1,
        b'C' << 1,
        b'A' << 1,
        b'L' << 1,
        b'L' << 1,
        0x63, // src SSID 1, last
        0x03,
        0xBB,
        b'x',
    ];

    #[test]
    fn emit_and_parse_literal() {
        let ui = UiFrame::new(call("RSYNC"), call("N0CALL-1"), b"x");
        assert_eq!(ui.to_bytes(), LITERAL);
        assert_eq!(ui.buffer_len(), LITERAL.len());
        assert_eq!(UiFrame::parse(&LITERAL).unwrap(), ui);
        let got = parse_radiosync(&LITERAL).unwrap();
        assert_eq!(
            (got.source.to_string().as_str(), got.info),
            ("N0CALL-1", &b"x"[..])
        );
    }

    #[test]
    fn digipeaters_parsed() {
        let mut ui = UiFrame::new(call("RSYNC"), call("N0CALL"), b"abc");
        ui.digipeaters = vec![call("WIDE1-1"), call("RELAY")];
        let b = ui.to_bytes();
        assert_eq!(b[13] & 1, 0);
        assert_eq!(b[27] & 1, 1);
        assert_eq!(UiFrame::parse(&b).unwrap(), ui);
    }

    #[test]
    fn bad_frames_rejected() {
        for n in 0..MIN_HEADER_LEN {
            assert!(matches!(
                UiFrame::parse(&LITERAL[..n]),
                Err(Ax25Error::Truncated(_))
            ));
        }
        let mut aprs = LITERAL;
        aprs[15] = 0xF0;
        assert_eq!(parse_radiosync(&aprs), Err(Ax25Error::WrongPid(0xF0)));
        let mut i_frame = LITERAL;
        i_frame[14] = 0x00;
        assert_eq!(UiFrame::parse(&i_frame), Err(Ax25Error::NotUi(0x00)));
        let mut no_end = LITERAL;
        no_end[13] &= !1;
        assert!(UiFrame::parse(&no_end).is_err());
        let mut lower = LITERAL;
        lower[0] = b'r' << 1;
        assert_eq!(
            UiFrame::parse(&lower),
            Err(Ax25Error::BadAddressChar(b'r' << 1))
        );
        // Eleven addresses with no end marker.
        let many: Vec<u8> = (0..11)
            .flat_map(|_| LITERAL[..7].to_vec())
            .chain([3, 0xBB])
            .collect();
        assert_eq!(UiFrame::parse(&many), Err(Ax25Error::BadAddressField));
    }

    fn callsign() -> impl Strategy<Value = Callsign> {
        ("[A-Z0-9]{1,6}", 0u8..16).prop_map(|(c, s)| Callsign::new(&c, s).unwrap())
    }

    proptest! {
        #![proptest_config(crate::frame::proptest_config(256))]

        #[test]
        fn round_trip(d in callsign(), s in callsign(), info in proptest::collection::vec(any::<u8>(), 0..300)) {
            let ui = UiFrame::new(d, s.clone(), &info);
            let b = ui.to_bytes();
            prop_assert_eq!(b.len(), ui.buffer_len());
            let got = parse_radiosync(&b).unwrap();
            prop_assert_eq!((got.source, got.info), (s.clone(), &info[..]));
            prop_assert_eq!(s.to_string().parse::<Callsign>().unwrap(), s);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = UiFrame::parse(&bytes);
        }
    }
}
