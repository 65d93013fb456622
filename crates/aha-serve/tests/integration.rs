//! All integration tests of this crate in one binary: each test binary links candle, and
//! one binary per file made the test build slow and large.

mod common;
mod constraint;
mod http;
mod reasoning;
mod rollout;
mod tools;
