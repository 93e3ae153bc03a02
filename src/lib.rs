//! radiosync: keep SQLite databases in step between field stations over
//! HF/VHF radio modems, or as files on a USB stick.
//!
//! The data flow is the module tree:
//! `store -> delta -> codec -> sync -> arq -> frame -> transport`.

// `pub` only for what the crate exports: a helper that is not part of the API says so.
#![warn(unreachable_pub)]
#![warn(missing_docs)]

pub mod api;
pub mod arq;
pub mod auth;
pub mod bytes;
pub mod capture;
pub mod codec;
pub mod daemon;
pub mod delta;
pub mod discovery;
pub mod engine;
pub mod frame;
pub mod profile;
pub mod recon;
pub mod sim;
pub mod store;
pub mod sync;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod transport;
