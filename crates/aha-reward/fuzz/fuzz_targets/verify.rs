//! Extraction + equivalence on arbitrary input: no panic, and the same
//! verdict twice (no hidden state, no time dependence).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Gold and prediction are separated by the first 0xFF byte.
    let (g, p) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let gold = String::from_utf8_lossy(g);
    let pred = String::from_utf8_lossy(p);
    let a = aha_reward::verify(&gold, &pred);
    let b = aha_reward::verify(&gold, &pred);
    assert_eq!(a, b);
    let _ = aha_reward::answers_equivalent(&pred, &gold);
    // A stated rounding (the JSONL `precision` field), from the input's length.
    let _ = aha_reward::answers_equivalent_rounded(&gold, &pred, Some(data.len() as u32 % 8));
    let _ = aha_reward::RewardFn::Format.score(&pred, Some(&gold));
});
