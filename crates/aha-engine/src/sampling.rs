//! Next-token sampling from one row of logits: temperature, top-k, top-p, min-p.

use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0: off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose mass reaches top_p (1: off).
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one (0: off).
    pub min_p: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Temperature 0: the most likely token, no draw.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Pick a token from `logits` (modified in place).
    pub fn sample(&self, logits: &mut [f32], rng: &mut impl Rng) -> u32 {
        if self.is_greedy() {
            return argmax(logits);
        }
        let max = aha_model::ops::max_lanes(logits);
        let inv_t = 1.0 / self.temperature;
        let mut sum = 0.0f32;
        for l in logits.iter_mut() {
            *l = ((*l - max) * inv_t).exp();
            sum += *l;
        }
        let probs = logits;
        for p in probs.iter_mut() {
            *p /= sum;
        }
        let filtered = self.top_k > 0 || self.top_p < 1.0 || self.min_p > 0.0;
        if !filtered {
            return draw(
                probs.iter().enumerate().map(|(i, &p)| (i as u32, p)),
                1.0,
                rng,
            );
        }
        let candidates = self.candidates(probs);
        let mass: f32 = candidates.iter().map(|c| c.1).sum();
        draw(candidates.into_iter(), mass, rng)
    }

    /// The tokens that survive top-k, min-p and top-p, most likely first.
    fn candidates(&self, probs: &[f32]) -> Vec<(u32, f32)> {
        let pmax = probs.iter().copied().fold(0.0f32, f32::max);
        let floor = self.min_p * pmax;
        let mut c: Vec<(u32, f32)> = probs
            .iter()
            .enumerate()
            .filter(|(_, &p)| p >= floor && p > 0.0)
            .map(|(i, &p)| (i as u32, p))
            .collect();
        let by_prob = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if self.top_k > 0 && c.len() > self.top_k {
            c.select_nth_unstable_by(self.top_k - 1, by_prob);
            c.truncate(self.top_k);
        }
        if self.top_p < 1.0 && c.len() > 1024 {
            // Sorting the whole vocabulary is slow; the nucleus usually lies within the top 1024.
            let mut head = c.clone();
            head.select_nth_unstable_by(1023, by_prob);
            head.truncate(1024);
            if head.iter().map(|x| x.1).sum::<f32>() >= self.top_p {
                c = head;
            }
        }
        c.sort_unstable_by(by_prob);
        if self.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = c.len();
            for (i, &(_, p)) in c.iter().enumerate() {
                cum += p;
                if cum >= self.top_p {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep);
        }
        c
    }
}

pub fn argmax(xs: &[f32]) -> u32 {
    // The maximum in vector lanes, then its first index: a compare-and-branch chain over a
    // 32k-vocabulary row took 2-3% of a batch-32 greedy decode step.
    let max = aha_model::ops::max_lanes(xs);
    xs.iter().position(|&x| x == max).unwrap_or(0) as u32
}

fn draw(items: impl Iterator<Item = (u32, f32)>, mass: f32, rng: &mut impl Rng) -> u32 {
    let mut u = rng.random::<f32>() * mass;
    let mut last = 0;
    for (i, p) in items {
        last = i;
        if u < p {
            return i;
        }
        u -= p;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn freq(params: &SamplingParams, logits: &[f32], n: usize) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0; logits.len()];
        for _ in 0..n {
            counts[params.sample(&mut logits.to_vec(), &mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn lane_max_is_the_folds_max() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in [0usize, 1, 15, 16, 17, 100, 128_815] {
            let mut v: Vec<f32> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 40) as f32 / 1e5 - 80.0
                })
                .collect();
            if n > 20 {
                v[3] = f32::NAN;
                v[n - 1] = f32::NEG_INFINITY;
            }
            let fold = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(
                aha_model::ops::max_lanes(&v).to_bits(),
                fold.to_bits(),
                "n = {n}"
            );
        }
        assert_eq!(
            aha_model::ops::max_lanes(&[f32::NAN; 20]),
            f32::NEG_INFINITY
        );
    }

    #[test]
    fn greedy_takes_argmax() {
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(
            SamplingParams::greedy().sample(&mut [0.1, 3.0, 2.9, -1.0], &mut rng),
            1
        );
    }

    #[test]
    fn argmax_is_the_first_largest() {
        let mut rng = StdRng::seed_from_u64(1);
        for len in [1usize, 7, 8, 9, 33, 1000] {
            for _ in 0..20 {
                // Few distinct values, so that ties are common.
                let xs: Vec<f32> = (0..len).map(|_| rng.random_range(0..5) as f32).collect();
                let mut best = 0;
                for (i, &x) in xs.iter().enumerate() {
                    if x > xs[best] {
                        best = i;
                    }
                }
                assert_eq!(argmax(&xs), best as u32, "{xs:?}");
            }
        }
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), 0);
        assert_eq!(argmax(&[-0.0, 0.0, -1.0]), 0);
    }

    #[test]
    fn temperature_one_follows_softmax() {
        // probs 0.5, 0.25, 0.25
        let logits = [2f32.ln(), 0.0, 0.0];
        let c = freq(&SamplingParams::default(), &logits, 20000);
        assert!((c[0] as f32 / 20000.0 - 0.5).abs() < 0.02, "{c:?}");
        assert!((c[1] as f32 / 20000.0 - 0.25).abs() < 0.02, "{c:?}");
    }

    #[test]
    fn top_k_top_p_and_min_p_cut_the_tail() {
        let logits = [4f32.ln(), 2f32.ln(), 1f32.ln(), 1f32.ln()]; // 0.5 0.25 0.125 0.125
        let k = freq(
            &SamplingParams {
                top_k: 2,
                ..Default::default()
            },
            &logits,
            5000,
        );
        assert_eq!(k[2] + k[3], 0);
        assert!(k[1] > 1300, "{k:?}"); // renormalised: 1/3
        let p = freq(
            &SamplingParams {
                top_p: 0.7,
                ..Default::default()
            },
            &logits,
            5000,
        );
        assert_eq!(p[2] + p[3], 0, "{p:?}");
        let m = freq(
            &SamplingParams {
                min_p: 0.3,
                ..Default::default()
            },
            &logits,
            5000,
        );
        assert_eq!(m[2] + m[3], 0, "{m:?}");
        assert!(m[1] > 0);
    }

    #[test]
    fn top_p_over_a_large_vocabulary() {
        let mut logits = vec![0f32; 5000];
        logits[17] = 20.0;
        let c = freq(
            &SamplingParams {
                top_p: 0.95,
                ..Default::default()
            },
            &logits,
            200,
        );
        assert_eq!(c[17], 200);
    }
}
