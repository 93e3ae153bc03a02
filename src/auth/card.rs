//! The station card: one line with name, callsign, UUID and public key, short
//! enough to read out over a voice channel or put in a QR code.
//!
//! ```text
//! rs1:clinic:DL1ABC:aaaa-bbbb-…-cccc
//! ```
//!
//! The last field is base32 (RFC 4648 alphabet, lowercase, no padding, in
//! groups of four for reading aloud) of UUID 16 | public key 32 | check 2,
//! where the check is the first two bytes of SHA-256 over the name, the
//! callsign and the 48 bytes before it: a misheard letter is caught, not
//! registered. Parsing ignores case, spaces and dashes in that field.

use data_encoding::BASE32_NOPAD;
use sha2::{Digest, Sha256};

use super::PublicKey;
use crate::delta::StationId;

const PREFIX: &str = "rs1";

/// A station's card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Card {
    /// The station's own name (a peer may register it under another).
    pub name: String,
    /// Its callsign, if it has one.
    pub callsign: Option<String>,
    /// Its UUID.
    pub station: StationId,
    /// Its public key.
    pub key: PublicKey,
}

/// Why a card line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// Not `rs1:NAME:CALL:DATA`.
    #[error("a card reads rs1:NAME:CALLSIGN:KEYDATA (from `radiosync card` on the peer)")]
    Shape,
    /// The key data is not base32 of the right length.
    #[error("the key data of the card is not 80 base32 letters: check what was copied")]
    Encoding,
    /// The check bytes do not match: a letter was misread or changed.
    #[error("the card's check does not match: a letter was misread or the card was altered")]
    Check,
    /// The key in the card is not a usable public key.
    #[error("the card holds no usable public key")]
    Key,
}

fn check(name: &str, call: &str, body: &[u8]) -> [u8; 2] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(call.as_bytes());
    h.update([0]);
    h.update(body);
    let d = h.finalize();
    [d[0], d[1]]
}

/// A name or callsign as one card field: no separators, no spaces.
fn field(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == ':' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

impl Card {
    /// The card as one line.
    pub fn to_line(&self) -> String {
        let name = field(&self.name);
        let call = self
            .callsign
            .as_deref()
            .map(field)
            .unwrap_or_else(|| "-".into());
        let mut body = Vec::with_capacity(50);
        body.extend_from_slice(&self.station.0);
        body.extend_from_slice(&self.key.to_bytes());
        let c = check(&name, &call, &body);
        body.extend_from_slice(&c);
        let text = BASE32_NOPAD.encode(&body).to_lowercase();
        let groups: Vec<&str> = text
            .as_bytes()
            .chunks(4)
            .map(|g| std::str::from_utf8(g).expect("base32 is ASCII"))
            .collect();
        format!("{PREFIX}:{name}:{call}:{}", groups.join("-"))
    }

    /// Reads a card line (surrounding space ignored).
    pub fn parse(line: &str) -> Result<Card, CardError> {
        let mut parts = line.trim().splitn(4, ':');
        let (Some(PREFIX), Some(name), Some(call), Some(data)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CardError::Shape);
        };
        if name.is_empty() || call.is_empty() {
            return Err(CardError::Shape);
        }
        let letters: String = data
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .collect::<String>()
            .to_uppercase();
        let body = BASE32_NOPAD
            .decode(letters.as_bytes())
            .map_err(|_| CardError::Encoding)?;
        if body.len() != 50 {
            return Err(CardError::Encoding);
        }
        if check(name, call, &body[..48]) != body[48..] {
            return Err(CardError::Check);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&body[..16]);
        let mut key = [0u8; 32];
        key.copy_from_slice(&body[16..48]);
        Ok(Card {
            name: name.into(),
            callsign: (call != "-").then(|| call.into()),
            station: StationId(id),
            key: PublicKey::from_bytes(&key).map_err(|_| CardError::Key)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::StationKey;

    fn card() -> Card {
        Card {
            name: "clinic".into(),
            callsign: Some("DL1ABC".into()),
            station: StationId([0x11; 16]),
            key: StationKey::from_bytes(&[7; 32]).public(),
        }
    }

    #[test]
    fn a_card_reads_back_and_is_short() {
        let line = card().to_line();
        assert!(line.starts_with("rs1:clinic:DL1ABC:"), "{line}");
        assert!(line.len() <= 120, "{} chars: {line}", line.len());
        assert_eq!(Card::parse(&line).unwrap(), card());
        assert_eq!(
            Card::parse(
                &line
                    .to_uppercase()
                    .replacen("RS1:CLINIC:DL1ABC", "rs1:clinic:DL1ABC", 1)
            )
            .unwrap(),
            card()
        );
        let spaced = line.replace('-', " ");
        assert_eq!(Card::parse(&spaced).unwrap(), card());
        let mut none = card();
        none.callsign = None;
        none.name = "field office".into();
        let l = none.to_line();
        assert!(l.starts_with("rs1:field_office:-:"), "{l}");
        let back = Card::parse(&l).unwrap();
        assert_eq!((back.callsign, back.name.as_str()), (None, "field_office"));
    }

    #[test]
    fn every_misread_letter_is_caught() {
        let line = card().to_line();
        let data_start = line.rfind(':').unwrap() + 1;
        let mut caught = 0;
        let mut tried = 0;
        for (i, c) in line.char_indices().skip(data_start) {
            if c == '-' {
                continue;
            }
            let other = if c == 'a' { 'b' } else { 'a' };
            let mut bad = line.clone();
            bad.replace_range(i..i + 1, &other.to_string());
            tried += 1;
            if Card::parse(&bad).is_err() {
                caught += 1;
            }
        }
        // A 16-bit check misses one change in 65,536; none of these 80.
        assert_eq!(caught, tried);
        let renamed = line.replacen("clinic", "clinik", 1);
        assert_eq!(Card::parse(&renamed).unwrap_err(), CardError::Check);
        assert_eq!(Card::parse("rs1:a:b").unwrap_err(), CardError::Shape);
        assert_eq!(Card::parse("rs2:a:b:cccc").unwrap_err(), CardError::Shape);
        assert_eq!(
            Card::parse("rs1:a:b:cccc").unwrap_err(),
            CardError::Encoding
        );
    }
}
