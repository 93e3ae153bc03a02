//! One transmission for many (issue 9): a broadcast is one bundle for
//! several peers at once, made against what all of them have seen.
//!
//! ```text
//! RSSIGNED envelope (auth::SignedFile) around:
//!   "RSC1" | base vector (VersionVector::write) | bundle (an unaddressed Slice)
//! ```
//!
//! The base is the pointwise minimum of the vectors the addressed peers
//! confirmed. A station holding at least the base holds, once the rows are
//! applied, everything the sender's vector claims: it takes the claim, as
//! from a delta. Any other station applies the rows by the merge rules only.
//! Export: `Store::export_cast`; import: `Store::import_cast`; the pieces on
//! air: `sync::cast`.

use super::StoreError;
use crate::delta::VersionVector;
use crate::sync::BundleId;

/// The first bytes of a broadcast's signed payload.
pub const CAST_MAGIC: &[u8; 4] = b"RSC1";

/// A broadcast made by `Store::export_cast`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CastExport {
    /// Its id (of `bytes`); zero when there is nothing to send.
    pub id: BundleId,
    /// The signed object; empty when there is nothing to send.
    pub bytes: Vec<u8>,
    /// Row versions in it.
    pub rows: u64,
    /// The peers it is for (kept as their outgoing bundle).
    pub peers: Vec<String>,
    /// Peers named but left out, and why.
    pub left_out: Vec<(String, String)>,
}

/// The signed payload: magic, base, bundle.
pub(crate) fn cast_payload(base: &VersionVector, bundle: &[u8]) -> Vec<u8> {
    let mut out = CAST_MAGIC.to_vec();
    base.write(&mut out);
    out.extend_from_slice(bundle);
    out
}

/// The signer of a broadcast file (a signed envelope around a broadcast),
/// not yet verified; `None` for any other file.
pub fn cast_signer(bytes: &[u8]) -> Option<crate::delta::StationId> {
    let f = crate::auth::SignedFile::parse(bytes)?;
    is_cast_payload(&bytes[bytes.len() - f.payload_len()..]).then_some(f.signer)
}

/// Whether a signed payload is a broadcast's.
pub fn is_cast_payload(payload: &[u8]) -> bool {
    payload.starts_with(CAST_MAGIC)
}

/// The base and the bundle bytes of a broadcast's signed payload.
pub(crate) fn parse_cast_payload(payload: &[u8]) -> Result<(VersionVector, &[u8]), StoreError> {
    let rest = payload
        .strip_prefix(CAST_MAGIC.as_slice())
        .ok_or_else(|| StoreError::Malformed("not a broadcast".into()))?;
    let mut r = crate::bytes::ByteReader::new(rest);
    let base = VersionVector::read(&mut r)
        .map_err(|_| StoreError::Malformed("a broadcast's base vector is malformed".into()))?;
    Ok((base, r.rest()))
}
