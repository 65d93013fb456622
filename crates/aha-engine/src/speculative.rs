//! Speculative greedy decoding for DeepSeek-V3: a draft token per step (from the model's
//! own MTP module, or any proposer) verified by the main model in the same pass, so the
//! output is plain greedy decoding's in fewer main-model passes.

use crate::{EngineError, Result};
use aha_model::deepseek_v3::DeepseekV3;
use aha_model::{ForwardInput, KvCache, LogitsFor, Mode};
use candle_core::Tensor;

/// Where speculative decoding gets its draft tokens.
pub enum Drafter<'a> {
    /// The model's first MTP module (self-speculative decoding).
    Mtp,
    /// Any other proposer: given the tokens so far (prompt, accepted output and the pending
    /// next token), propose the token after. For tests and external draft models.
    Func(&'a mut dyn FnMut(&[u32]) -> u32),
}

/// Counters of a speculative decoding run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecStats {
    /// Verification forward passes of the main model (after the prefill).
    pub steps: usize,
    pub drafted: usize,
    pub accepted: usize,
}

/// Greedy decoding of one sequence with one draft token per step, verified by the main
/// model: the output is exactly plain greedy decoding's (up to float ties), in fewer main
/// model passes when drafts are accepted. Returns `max_new` tokens (no EOS handling).
pub fn speculative_greedy(
    model: &DeepseekV3,
    prompt: &[u32],
    max_new: usize,
    mut drafter: Drafter,
) -> Result<(Vec<u32>, SpecStats)> {
    let device = model.device().clone();
    if prompt.is_empty() {
        return Err(EngineError::Invalid("empty prompt".into()));
    }
    let use_mtp = matches!(drafter, Drafter::Mtp);
    if use_mtp && model.num_mtp() == 0 {
        return Err(EngineError::Invalid(
            "this checkpoint has no MTP module".into(),
        ));
    }
    let row = |v: &[u32]| Tensor::from_vec(v.to_vec(), (1, v.len()), &device);
    let pos = |start: usize, n: usize| {
        Tensor::arange(start as u32, (start + n) as u32, &device)?.unsqueeze(0)
    };
    let argmax = |logits: &Tensor, i: usize| -> Result<u32> {
        Ok(logits.get(0)?.get(i)?.argmax(0)?.to_scalar::<u32>()?)
    };
    let mut cache = KvCache::new(model.num_layers());
    let mut mtp_cache = KvCache::new(1);
    let mut stats = SpecStats::default();
    // The main model on `ids` from position `start`, through the cache.
    let main = |ids: &[u32], start: usize, cache: &mut KvCache| {
        let (input_ids, position_ids) = (row(ids)?, pos(start, ids.len())?);
        let input = ForwardInput {
            input_ids: &input_ids,
            position_ids: &position_ids,
            key_mask: None,
            segments: None,
            mode: Mode::Inference,
            logits: LogitsFor::All,
        };
        Ok::<_, EngineError>(model.forward_full(&input, Some(cache), false)?)
    };
    // Prefill.
    let p = prompt.len();
    let out = main(prompt, 0, &mut cache)?;
    let mut next = argmax(&out.logits, p - 1)?;
    let mut tokens: Vec<u32> = prompt.to_vec();
    let mut produced = vec![next];
    // The MTP module sees (h_i, x_{i+1}) at position i, over its own causal cache.
    let mtp_draft = |hidden: &Tensor,
                     next_tokens: &[u32],
                     start: usize,
                     mtp_cache: &mut KvCache|
     -> Result<u32> {
        let ids = row(next_tokens)?;
        let (logits, _) = model.mtp_forward(
            0,
            hidden,
            &ids,
            &pos(start, next_tokens.len())?,
            None,
            Some(mtp_cache),
        )?;
        argmax(&logits, next_tokens.len() - 1)
    };
    let mut draft = if use_mtp {
        let mut nt: Vec<u32> = prompt[1..].to_vec();
        nt.push(next);
        mtp_draft(&out.hidden, &nt, 0, &mut mtp_cache)?
    } else {
        0
    };
    while produced.len() < max_new {
        let n = tokens.len(); // position of `next`
        tokens.push(next);
        if let Drafter::Func(f) = &mut drafter {
            draft = f(&tokens);
        }
        stats.steps += 1;
        stats.drafted += 1;
        let out = main(&[next, draft], n, &mut cache)?;
        let t1 = argmax(&out.logits, 0)?;
        if t1 == draft {
            stats.accepted += 1;
            let t2 = argmax(&out.logits, 1)?;
            tokens.push(draft);
            produced.push(draft);
            produced.push(t2);
            next = t2;
            if use_mtp {
                draft = mtp_draft(&out.hidden, &[draft, t2], n, &mut mtp_cache)?;
            }
        } else {
            cache.truncate(n + 1);
            produced.push(t1);
            next = t1;
            if use_mtp {
                draft = mtp_draft(&out.hidden.narrow(1, 0, 1)?, &[t1], n, &mut mtp_cache)?;
            }
        }
    }
    produced.truncate(max_new);
    Ok((produced, stats))
}
