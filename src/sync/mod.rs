//! The session protocol between two stations, pure: it sits on the ARQ's
//! in-order, exactly-once message service and asks the shell for store work
//! through events. `docs/sync-protocol.md` describes messages, states and resume.

pub mod beacon;
pub mod cast;
pub mod message;
pub mod reassembly;
pub mod session;

#[cfg(test)]
mod tests;

pub use message::{BundleId, ErrorCode, Hello, Message, MessageError, Resume, PROTOCOL_VERSION};
pub use session::{
    Config, ErrorKind, KeptOutgoing, LocalInfo, PartialIncoming, PeerAuth, PeerState, Progress,
    Reconciled, Role, Session, SessionError, SessionEvent, Summary, WrongState,
};
