//! Frame capture files (being written)
