//! Hugging Face <-> llama.cpp tensor names and the q/k row layout of the `llama`
//! architecture (Llama and Qwen2 style models; DeepSeek-V2/V3 has its own map in aha-model).

use crate::error::{GgufError, Result};

const GLOBAL: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// Per-layer names: `model.layers.{i}.` + HF suffix <-> `blk.{i}.` + GGUF suffix.
const LAYER: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("self_attn.o_proj.bias", "attn_output.bias"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

fn map(name: &str, from_layer: &str, to_layer: &str, hf_to_gguf: bool) -> Option<String> {
    let pick = |p: &(&'static str, &'static str)| if hf_to_gguf { *p } else { (p.1, p.0) };
    if let Some((_, to)) = GLOBAL.iter().map(pick).find(|(from, _)| *from == name) {
        return Some(to.to_string());
    }
    let rest = name.strip_prefix(from_layer)?;
    let (layer, suffix) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (_, to) = LAYER.iter().map(pick).find(|(from, _)| *from == suffix)?;
    Some(format!("{to_layer}{layer}.{to}"))
}

/// llama.cpp's name for an HF Llama/Qwen2 tensor name, if it has one.
pub fn gguf_name(hf: &str) -> Option<String> {
    map(hf, "model.layers.", "blk.", true)
}

/// The HF name for a llama.cpp Llama/Qwen2 tensor name, if it has one.
pub fn hf_name(gguf: &str) -> Option<String> {
    map(gguf, "blk.", "model.layers.", false)
}

/// llama.cpp stores Llama's q and k projections with the rows of each head interleaved
/// (rope on adjacent pairs); HF's layout splits each head in halves. Reorder whole rows
/// (quantization blocks lie within a row, so this works on quantized bytes too).
/// `to_hf`: GGUF -> HF; otherwise HF -> GGUF.
pub fn permute_rows(data: &[u8], rows: usize, heads: usize, to_hf: bool) -> Result<Vec<u8>> {
    if rows == 0
        || heads == 0
        || !rows.is_multiple_of(heads)
        || !(rows / heads).is_multiple_of(2)
        || !data.len().is_multiple_of(rows)
    {
        return Err(GgufError::Layout(format!(
            "cannot permute {rows} rows into {heads} heads"
        )));
    }
    let row_bytes = data.len() / rows;
    let hd = rows / heads;
    let half = hd / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let gguf = h * hd + 2 * i + j;
                let hf = h * hd + j * half + i;
                let (src, dst) = if to_hf { (gguf, hf) } else { (hf, gguf) };
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    Ok(out)
}
