//! frame (being written)
