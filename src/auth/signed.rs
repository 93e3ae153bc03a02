//! Signed files: a bundle or reconciliation file in an envelope signed with
//! the sender's station key, checked against the key registered for the
//! sender before a byte of the payload is read.
//!
//! ```text
//! 0..8    magic      "RSSIGNED"
//! 8..24   signer     station UUID
//! 24..88  signature  Ed25519 over magic | signer | payload
//! 88..    payload    the bundle or reconciliation file, unchanged
//! ```

use super::{AuthError, PublicKey, StationKey};
use crate::delta::StationId;

/// The first bytes of a signed file.
pub const SIGNED_MAGIC: &[u8; 8] = b"RSSIGNED";
const HEAD: usize = 8 + 16 + 64;

/// A signed file, parsed but not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFile<'a> {
    /// Who says it signed.
    pub signer: StationId,
    signature: [u8; 64],
    /// The payload: read it only after `verify`.
    payload: &'a [u8],
}

impl<'a> SignedFile<'a> {
    /// Whether `bytes` start like a signed file.
    pub fn is_signed(bytes: &[u8]) -> bool {
        bytes.starts_with(SIGNED_MAGIC)
    }

    /// Wraps `payload` signed by `key` as station `signer`.
    pub fn seal(key: &StationKey, signer: StationId, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD + payload.len());
        out.extend_from_slice(SIGNED_MAGIC);
        out.extend_from_slice(&signer.0);
        out.extend_from_slice(&[0u8; 64]);
        out.extend_from_slice(payload);
        let sig = key.sign(&Self::message(signer, payload));
        out[24..HEAD].copy_from_slice(&sig);
        out
    }

    fn message(signer: StationId, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(24 + payload.len());
        m.extend_from_slice(SIGNED_MAGIC);
        m.extend_from_slice(&signer.0);
        m.extend_from_slice(payload);
        m
    }

    /// Splits the envelope; `None` when the bytes are not a whole one.
    pub fn parse(bytes: &'a [u8]) -> Option<SignedFile<'a>> {
        if bytes.len() < HEAD || !Self::is_signed(bytes) {
            return None;
        }
        let mut signer = [0u8; 16];
        signer.copy_from_slice(&bytes[8..24]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[24..HEAD]);
        Some(SignedFile {
            signer: StationId(signer),
            signature,
            payload: &bytes[HEAD..],
        })
    }

    /// Bytes of the payload (read it only after `verify`).
    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }

    /// The payload, once the signature verifies against `key` (the key
    /// registered for `signer`).
    pub fn verify(&self, key: &PublicKey) -> Result<&'a [u8], AuthError> {
        key.verify(&Self::message(self.signer, self.payload), &self.signature)?;
        Ok(self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flipped_byte_is_refused() {
        let key = StationKey::from_bytes(&[5; 32]);
        let me = StationId([3; 16]);
        let sealed = SignedFile::seal(&key, me, b"a bundle's bytes");
        let f = SignedFile::parse(&sealed).unwrap();
        assert_eq!(f.signer, me);
        assert_eq!(f.verify(&key.public()).unwrap(), b"a bundle's bytes");
        let other = StationKey::from_bytes(&[6; 32]).public();
        assert_eq!(f.verify(&other).unwrap_err(), AuthError::BadSignature);
        for i in 0..sealed.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = sealed.clone();
                bad[i] ^= bit;
                let ok = SignedFile::parse(&bad).is_some_and(|f| f.verify(&key.public()).is_ok());
                assert!(!ok, "byte {i} bit {bit:#x} passed");
            }
        }
        assert!(SignedFile::parse(&sealed[..HEAD - 1]).is_none());
    }
}
