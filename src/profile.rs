//! Modem profiles (being written)
