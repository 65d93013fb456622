//! aha-train
