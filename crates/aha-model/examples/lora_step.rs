//! Time a training forward + backward (the GRPO training pass without the optimizer), full
//! fine-tuning vs LoRA, alternating in one process:
//! `cargo run --release -p aha-model --example lora_step -- MODEL [batch] [len] [reps]`
//! (MODEL: an HF directory or a .gguf file, loaded dense).

use aha_model::{lora, ForwardInput, LoadOptions, LogitsFor, LoraConfig, Mode, Model, Tensor};
use candle_core::{Device, D};
use std::time::Instant;

/// (forward s, backward s)
fn pass(model: &Model, ids: &Tensor, pos: &Tensor, tail: usize) -> candle_core::Result<(f64, f64)> {
    let t0 = Instant::now();
    let input = ForwardInput {
        input_ids: ids,
        position_ids: pos,
        key_mask: None,
        segments: None,
        mode: Mode::Train,
        logits: LogitsFor::Tail(tail),
    };
    let logits = model
        .forward(&input, None)
        .map_err(candle_core::Error::wrap)?;
    let loss = candle_nn::ops::log_softmax(&logits, D::Minus1)?.mean_all()?;
    let fwd = t0.elapsed().as_secs_f64();
    let store = loss.backward()?;
    let n = model
        .trainable_params()
        .iter()
        .filter(|(_, v)| store.get(v.as_tensor()).is_some())
        .count();
    assert!(n > 0);
    Ok((fwd, t0.elapsed().as_secs_f64() - fwd))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: lora_step MODEL [batch] [len] [reps]")?;
    let b: usize = args.get(2).map_or(Ok(8), |s| s.parse())?;
    let t: usize = args.get(3).map_or(Ok(214), |s| s.parse())?;
    let reps: usize = args.get(4).map_or(Ok(2), |s| s.parse())?;
    let full = Model::load_dense(path.as_ref(), &LoadOptions::default())?;
    let mut adapted = Model::load_dense(path.as_ref(), &LoadOptions::default())?;
    adapted.add_lora(&LoraConfig::new(8, 16.0, &lora::LLAMA_TARGETS), 0)?;
    let vocab = full.vocab_size() as u32;
    let ids: Vec<u32> = (0..b * t).map(|i| (i as u32 * 7919 + 13) % vocab).collect();
    let ids = Tensor::from_vec(ids, (b, t), &Device::Cpu)?;
    let pos = Tensor::arange(0u32, t as u32, &Device::Cpu)?
        .unsqueeze(0)?
        .broadcast_as((b, t))?
        .contiguous()?;
    for rep in 0..reps {
        let f = pass(&full, &ids, &pos, 65)?;
        let l = pass(&adapted, &ids, &pos, 65)?;
        println!(
            "rep {rep} [{b}, {t}]: full fine-tuning forward {:.2} s + backward {:.2} s; LoRA r=8 forward {:.2} s + backward {:.2} s",
            f.0, f.1, l.0, l.1
        );
    }
    Ok(())
}
