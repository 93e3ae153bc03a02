//! The station beacon (issue 9; the blueprints' Zeroconf, over the air): a
//! control frame outside any session that says who is on the channel and what
//! it holds. Unauthenticated: anyone can send one in any station's name, so a
//! beacon only ever fills the `heard` list; registering a station takes its
//! card, whose key must match the beacon's digest.
//!
//! ```text
//! CONTROL_BEACON u8 | version u8 | station 16 | key digest 8 (0: no key)
//! | fingerprint u64 LE | rows varint | changes varint
//! | callsign: len u8, UTF-8 | name: len u8, UTF-8
//! ```

use crate::bytes::{put_varint, ByteReader};
use crate::delta::StationId;

use super::message::MAX_CALLSIGN;

/// First payload byte of a control frame carrying a beacon.
pub const CONTROL_BEACON: u8 = 0x03;
/// The beacon layout this build writes and reads.
pub const BEACON_VERSION: u8 = 1;
/// Longest station name a beacon carries (longer names are cut).
pub const MAX_BEACON_NAME: usize = 32;

/// What a station says of itself on the air.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beacon {
    /// The station's UUID.
    pub station: StationId,
    /// First 8 bytes of SHA-256 of its public key (`PublicKey::short`); zeros
    /// for a station without a key.
    pub key: [u8; 8],
    /// Its content fingerprint.
    pub fingerprint: u64,
    /// Rows it holds in its tracked tables.
    pub rows: u64,
    /// Its own change counter: grows with every local write.
    pub changes: u64,
    /// Its callsign; empty if none.
    pub callsign: String,
    /// Its name.
    pub name: String,
}

/// Why a control payload is not a beacon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BeaconError {
    /// Not a beacon, or a version this build does not read.
    #[error("not a beacon of version {BEACON_VERSION}")]
    NotBeacon,
    /// A field ends early, or bytes follow the last one.
    #[error("beacon truncated or malformed")]
    Malformed,
    /// A callsign or name too long, not UTF-8, or with control characters.
    #[error("beacon text is not a plain callsign or name")]
    BadText,
}

fn put_text(buf: &mut Vec<u8>, text: &str, max: usize) {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    buf.push(end as u8);
    buf.extend_from_slice(&text.as_bytes()[..end]);
}

fn read_text(r: &mut ByteReader<'_>, max: usize) -> Result<String, BeaconError> {
    let n = r.u8().map_err(|_| BeaconError::Malformed)? as usize;
    if n > max {
        return Err(BeaconError::BadText);
    }
    let bytes = r.take(n).map_err(|_| BeaconError::Malformed)?;
    let text = std::str::from_utf8(bytes).map_err(|_| BeaconError::BadText)?;
    if text.chars().any(char::is_control) {
        return Err(BeaconError::BadText);
    }
    Ok(text.to_string())
}

impl Beacon {
    /// The control frame payload.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.name.len());
        b.push(CONTROL_BEACON);
        b.push(BEACON_VERSION);
        b.extend_from_slice(&self.station.0);
        b.extend_from_slice(&self.key);
        b.extend_from_slice(&self.fingerprint.to_le_bytes());
        put_varint(&mut b, self.rows);
        put_varint(&mut b, self.changes);
        put_text(&mut b, &self.callsign, MAX_CALLSIGN);
        put_text(&mut b, &self.name, MAX_BEACON_NAME);
        b
    }

    /// Whether a control payload is a beacon (of any version).
    pub fn is_beacon(payload: &[u8]) -> bool {
        payload.first() == Some(&CONTROL_BEACON)
    }

    /// Parses untrusted bytes. Never panics.
    pub fn parse(payload: &[u8]) -> Result<Beacon, BeaconError> {
        if payload.get(..2) != Some(&[CONTROL_BEACON, BEACON_VERSION][..]) {
            return Err(BeaconError::NotBeacon);
        }
        let mut r = ByteReader::new(&payload[2..]);
        let malformed = |_| BeaconError::Malformed;
        let station = StationId(r.array::<16>().map_err(malformed)?);
        let key = r.array::<8>().map_err(malformed)?;
        let fingerprint = r.u64_le().map_err(malformed)?;
        let rows = r.varint().map_err(malformed)?;
        let changes = r.varint().map_err(malformed)?;
        let callsign = read_text(&mut r, MAX_CALLSIGN)?;
        let name = read_text(&mut r, MAX_BEACON_NAME)?;
        if !r.is_empty() {
            return Err(BeaconError::Malformed);
        }
        Ok(Beacon {
            station,
            key,
            fingerprint,
            rows,
            changes,
            callsign,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Beacon {
        Beacon {
            station: StationId([7; 16]),
            key: [1, 2, 3, 4, 5, 6, 7, 8],
            fingerprint: 0x0123_4567_89ab_cdef,
            rows: 14_587,
            changes: 300,
            callsign: "N0CALL-3".into(),
            name: "clinic".into(),
        }
    }

    #[test]
    fn a_beacon_round_trips_and_every_cut_is_refused() {
        let b = sample();
        let bytes = b.to_payload();
        assert!(bytes.len() < 64, "{} bytes", bytes.len());
        assert_eq!(Beacon::parse(&bytes), Ok(b));
        for cut in 0..bytes.len() {
            assert!(Beacon::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Beacon::parse(&longer), Err(BeaconError::Malformed));
    }

    #[test]
    fn text_with_control_characters_or_a_long_name_is_refused_or_cut() {
        let mut b = sample();
        b.name = "clinic\x1b[2J".into();
        assert_eq!(Beacon::parse(&b.to_payload()), Err(BeaconError::BadText));
        b.name = "é".repeat(40);
        let got = Beacon::parse(&b.to_payload()).unwrap();
        assert!(got.name.len() <= MAX_BEACON_NAME && b.name.starts_with(&got.name));
    }
}
