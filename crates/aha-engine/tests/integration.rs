//! All integration tests of this crate in one binary: each test binary links candle, and
//! one binary per file made the test build slow and large.

mod generate;
mod scheduler;
mod speculative;
mod worker;
