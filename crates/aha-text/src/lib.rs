//! aha-text
