//! arq (being written)
