//! The shell around the pure engine: store work, the station that routes
//! sessions over one link, the virtual-time harness, and the tokio loop.

pub mod simlink;
pub mod station;
pub mod store_work;

#[cfg(test)]
mod tests;
