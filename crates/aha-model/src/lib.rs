//! aha-model
