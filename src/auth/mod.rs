//! Station identity and authentication, pure: station keys, cards, the
//! session handshake's proofs, frame tags and signed files. Authentication
//! only: nothing here encrypts (amateur bands forbid obscuring the content;
//! see docs/security.md).
//!
//! Keys are Ed25519 (`ed25519-dalek`). Two registered stations share a static
//! secret, X25519 of their keys converted to Montgomery form (as `age` does
//! with ssh-ed25519 keys); per session it is expanded with HKDF-SHA256 over
//! both stations' ids and both nonces, and HMAC-SHA256 makes the Hello proofs
//! and the frame tags. No signature travels in a session: a MAC under a key
//! only the two stations can derive proves both identities in 16 bytes per
//! Hello and 8 per frame.

mod card;
mod signed;

pub use card::{Card, CardError};
pub use signed::{SignedFile, SIGNED_MAGIC};

use ed25519_dalek::{SigningKey, VerifyingKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::delta::StationId;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a Hello proof: once per session, so the full 128 bits.
pub const PROOF_LEN: usize = 16;
/// Bytes of a frame tag: 64 bits, the floor the design asks for; each frame
/// pays 1 + 8 bytes (docs/security.md has the airtime).
pub const FRAME_TAG_LEN: usize = 8;

/// Why a key, card or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// 32 bytes that are not an Ed25519 public key, or a weak (small-order) one.
    #[error("not a usable Ed25519 public key")]
    BadPublicKey,
    /// The two keys give no shared secret (a small-order peer key).
    #[error("the peer's key gives no shared secret")]
    NoSharedSecret,
    /// A signature does not verify against the registered key.
    #[error("the signature does not match the station's registered key")]
    BadSignature,
}

/// A station's private key. Its `Debug` shows only the public half.
#[derive(Clone)]
pub struct StationKey(SigningKey);

impl std::fmt::Debug for StationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StationKey({})", self.public())
    }
}

impl StationKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> StationKey {
        StationKey(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// A key from its 32 secret bytes (the key file; seeded tests).
    pub fn from_bytes(bytes: &[u8; 32]) -> StationKey {
        StationKey(SigningKey::from_bytes(bytes))
    }

    /// The 32 secret bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The secret this station shares with `peer`: X25519 of the two keys.
    pub fn shared_secret(&self, peer: &PublicKey) -> Result<SharedSecret, AuthError> {
        let shared = peer
            .0
            .to_montgomery()
            .mul_clamped(self.0.to_scalar_bytes())
            .to_bytes();
        // A small-order peer key gives the identity: anybody could compute it.
        if shared == [0u8; 32] {
            return Err(AuthError::NoSharedSecret);
        }
        Ok(SharedSecret(shared))
    }

    /// Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.0.sign(message).to_bytes()
    }
}

/// A station's public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl std::fmt::Display for PublicKey {
    /// Lowercase hex, as `status` and `peer list` show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl PublicKey {
    /// Checks 32 bytes: a valid point that is not of small order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, AuthError> {
        let k = VerifyingKey::from_bytes(bytes).map_err(|_| AuthError::BadPublicKey)?;
        if k.is_weak() {
            return Err(AuthError::BadPublicKey);
        }
        Ok(PublicKey(k))
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Strict Ed25519 verification of `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), AuthError> {
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| AuthError::BadSignature)
    }

    /// A short digest for beacons and logs: the first 8 bytes of SHA-256, hex.
    pub fn short(&self) -> String {
        use sha2::Digest;
        let d = Sha256::digest(self.0.as_bytes());
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The static secret two registered stations share. Never leaves the station.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret([u8; 32]);

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

/// A 32-byte MAC key of one session and one direction.
#[derive(Clone, PartialEq, Eq)]
pub struct MacKey([u8; 32]);

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

impl MacKey {
    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut m =
            <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for p in parts {
            m.update(p);
        }
        m
    }

    /// The 16-byte proof over `bytes`.
    pub fn proof(&self, bytes: &[u8]) -> [u8; PROOF_LEN] {
        let full = self.mac(&[bytes]).finalize().into_bytes();
        let mut out = [0u8; PROOF_LEN];
        out.copy_from_slice(&full[..PROOF_LEN]);
        out
    }

    /// Checks a proof in constant time.
    pub fn check_proof(&self, bytes: &[u8], proof: &[u8]) -> bool {
        proof.len() == PROOF_LEN && self.mac(&[bytes]).verify_truncated_left(proof).is_ok()
    }

    fn frame_mac(&self, kind: u8, session: u16, seq: u16, payload: &[u8]) -> HmacSha256 {
        let head = [
            kind,
            (session >> 8) as u8,
            session as u8,
            (seq >> 8) as u8,
            seq as u8,
        ];
        self.mac(&[&head, payload])
    }

    /// The tag of one frame: kind, session, seq and payload.
    pub fn frame_tag(
        &self,
        kind: u8,
        session: u16,
        seq: u16,
        payload: &[u8],
    ) -> [u8; FRAME_TAG_LEN] {
        let full = self
            .frame_mac(kind, session, seq, payload)
            .finalize()
            .into_bytes();
        let mut out = [0u8; FRAME_TAG_LEN];
        out.copy_from_slice(&full[..FRAME_TAG_LEN]);
        out
    }

    /// Checks a frame's tag in constant time.
    pub fn check_frame_tag(
        &self,
        kind: u8,
        session: u16,
        seq: u16,
        payload: &[u8],
        tag: &[u8],
    ) -> bool {
        tag.len() == FRAME_TAG_LEN
            && self
                .frame_mac(kind, session, seq, payload)
                .verify_truncated_left(tag)
                .is_ok()
    }
}

/// The keys of one session, derived from the stations' shared secret, their
/// ids and the nonces. The initiator's nonce is a counter that never repeats
/// (so it can derive its receive key before the responder speaks); the
/// responder's is random and binds everything the initiator sends after the
/// Hellos to this session.
#[derive(Clone, Debug)]
pub struct SessionKeys {
    hkdf: Hkdf<Sha256>,
    ids: [u8; 32],
    nonce_i: u64,
}

impl SessionKeys {
    /// Keys for a session `initiator` called `responder` with nonce `nonce_i`.
    pub fn new(
        secret: &SharedSecret,
        initiator: StationId,
        responder: StationId,
        nonce_i: u64,
    ) -> SessionKeys {
        let mut ids = [0u8; 32];
        ids[..16].copy_from_slice(&initiator.0);
        ids[16..].copy_from_slice(&responder.0);
        SessionKeys {
            hkdf: Hkdf::<Sha256>::new(Some(b"radiosync session 4"), &secret.0),
            ids,
            nonce_i,
        }
    }

    fn expand(&self, label: &[u8], nonce_r: Option<u64>) -> MacKey {
        let mut info = Vec::with_capacity(64);
        info.extend_from_slice(label);
        info.extend_from_slice(&self.ids);
        info.extend_from_slice(&self.nonce_i.to_be_bytes());
        if let Some(n) = nonce_r {
            info.extend_from_slice(&n.to_be_bytes());
        }
        let mut out = [0u8; 32];
        self.hkdf
            .expand(&info, &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        MacKey(out)
    }

    /// Proves the initiator's Hello.
    pub fn initiator_hello(&self) -> MacKey {
        self.expand(b"hello i", None)
    }

    /// Tags the responder's frames (its Hello's included).
    pub fn responder_frames(&self) -> MacKey {
        self.expand(b"frames r", None)
    }

    /// Proves the responder's Hello, bound to both nonces.
    pub fn responder_hello(&self, nonce_r: u64) -> MacKey {
        self.expand(b"hello r", Some(nonce_r))
    }

    /// Tags the initiator's frames after the Hellos.
    pub fn initiator_frames(&self, nonce_r: u64) -> MacKey {
        self.expand(b"frames i", Some(nonce_r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> StationKey {
        StationKey::from_bytes(&[n; 32])
    }

    #[test]
    fn both_stations_derive_the_same_secret_and_others_cannot() {
        let (a, b, c) = (key(1), key(2), key(3));
        let ab = a.shared_secret(&b.public()).unwrap();
        assert_eq!(ab, b.shared_secret(&a.public()).unwrap());
        assert_ne!(ab, c.shared_secret(&b.public()).unwrap());
        assert_ne!(ab, c.shared_secret(&a.public()).unwrap());
    }

    #[test]
    fn small_order_keys_are_refused() {
        // The identity point (y = 1) has order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicKey::from_bytes(&identity).unwrap_err(),
            AuthError::BadPublicKey
        );
    }

    #[test]
    fn keys_differ_by_direction_nonce_and_ids() {
        let s = key(1).shared_secret(&key(2).public()).unwrap();
        let (i, r) = (StationId([1; 16]), StationId([2; 16]));
        let k = SessionKeys::new(&s, i, r, 7);
        let tags = [
            k.initiator_hello().frame_tag(1, 2, 3, b"x"),
            k.responder_frames().frame_tag(1, 2, 3, b"x"),
            k.responder_hello(9).frame_tag(1, 2, 3, b"x"),
            k.initiator_frames(9).frame_tag(1, 2, 3, b"x"),
            k.initiator_frames(10).frame_tag(1, 2, 3, b"x"),
            SessionKeys::new(&s, i, r, 8)
                .responder_frames()
                .frame_tag(1, 2, 3, b"x"),
            SessionKeys::new(&s, r, i, 7)
                .responder_frames()
                .frame_tag(1, 2, 3, b"x"),
        ];
        for (n, a) in tags.iter().enumerate() {
            for b in &tags[n + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn a_tag_covers_every_field() {
        let s = key(1).shared_secret(&key(2).public()).unwrap();
        let m = SessionKeys::new(&s, StationId([1; 16]), StationId([2; 16]), 1).responder_frames();
        let t = m.frame_tag(1, 0x1234, 5, b"payload");
        assert!(m.check_frame_tag(1, 0x1234, 5, b"payload", &t));
        assert!(!m.check_frame_tag(2, 0x1234, 5, b"payload", &t));
        assert!(!m.check_frame_tag(1, 0x1235, 5, b"payload", &t));
        assert!(!m.check_frame_tag(1, 0x1234, 6, b"payload", &t));
        assert!(!m.check_frame_tag(1, 0x1234, 5, b"paylaad", &t));
        assert!(!m.check_frame_tag(1, 0x1234, 5, b"payload", &t[..7]));
        let p = m.proof(b"hello");
        assert!(m.check_proof(b"hello", &p));
        assert!(!m.check_proof(b"hellp", &p));
    }

    #[test]
    fn signatures_verify_only_with_the_signers_key() {
        let sig = key(1).sign(b"bundle");
        assert!(key(1).public().verify(b"bundle", &sig).is_ok());
        assert!(key(2).public().verify(b"bundle", &sig).is_err());
        assert!(key(1).public().verify(b"bundlf", &sig).is_err());
    }
}
