//! aha-engine
