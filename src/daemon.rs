//! The tokio loop (being written)
