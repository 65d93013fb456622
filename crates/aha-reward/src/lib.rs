//! aha-reward
