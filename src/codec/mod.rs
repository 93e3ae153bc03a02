//! Bundle encoding (being written). The signatures below are the agreed API.
#![allow(unused_variables)]

use crate::delta::{Bundle, SchemaFingerprint, StationId};

/// A zstd dictionary both ends hold. `id` = CRC-32 of `bytes` (0 = none).
#[derive(Clone, Debug, PartialEq)]
pub struct Dictionary {
    pub id: u32,
    pub bytes: Vec<u8>,
}

/// What can be read before decompressing: enough to refuse a bundle early.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub sender: StationId,
    pub receiver: Option<StationId>,
    pub schema: SchemaFingerprint,
    /// The sender's dictionary (0 = none); whether the body uses it is in `uses_dict`.
    pub dict_id: u32,
    pub uses_dict: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not written yet")]
    Todo,
}

/// `own_dict`: the sender's dictionary (its id is advertised); `use_dict`: compress with it
/// (only when the receiver is known to hold the same one).
pub fn encode(
    bundle: &Bundle,
    own_dict: Option<&Dictionary>,
    use_dict: bool,
) -> Result<Vec<u8>, CodecError> {
    Err(CodecError::Todo)
}

pub fn peek_header(bytes: &[u8]) -> Result<Header, CodecError> {
    Err(CodecError::Todo)
}

pub fn decode(bytes: &[u8], dict: Option<&Dictionary>) -> Result<Bundle, CodecError> {
    Err(CodecError::Todo)
}

/// Samples for dictionary training, in exactly the byte form rows take inside bundles.
pub fn training_samples(tables: &[crate::delta::TableChanges]) -> Vec<Vec<u8>> {
    Vec::new()
}

pub fn train_dictionary(samples: &[Vec<u8>], max_size: usize) -> Result<Dictionary, CodecError> {
    Err(CodecError::Todo)
}
