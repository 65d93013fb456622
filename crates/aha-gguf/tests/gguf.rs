//! The reader and writer of aha-gguf: round trips, the documented strict rules, the name
//! maps, and the fuzz corpus (every seed parses or errors without panicking).

use aha_gguf::names::{gguf_name, hf_name, permute_rows};
use aha_gguf::{write, GgmlType, GgufError, GgufFile, SpecialIds, TensorOut, Value};
use std::path::Path;

fn parse(b: &[u8], check: bool) -> Result<GgufFile, GgufError> {
    GgufFile::parse(&mut &b[..], b.len() as u64, Path::new("t.gguf"), check)
}

fn sample() -> Vec<u8> {
    let meta = vec![
        (
            "general.architecture".to_string(),
            Value::String("llama".into()),
        ),
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(
                ["<unk>", "<s>", "</s>", "a"]
                    .map(|s| Value::String(s.into()))
                    .to_vec(),
            ),
        ),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.eot_token_id".into(), Value::I32(2)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)),
        ("x.f".into(), Value::F64(0.5)),
    ];
    let f32s: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let q8 = vec![7u8; 34 * 2];
    let tensors = [
        TensorOut {
            name: "a",
            shape: &[2, 4],
            dtype: GgmlType::F32,
            data: &f32s,
        },
        TensorOut {
            name: "b",
            shape: &[2, 32],
            dtype: GgmlType::Q8_0,
            data: &q8,
        },
    ];
    let mut out = Vec::new();
    write(&mut out, &meta, &tensors).unwrap();
    out
}

#[test]
fn write_then_read_round_trips() {
    let b = sample();
    let g = parse(&b, true).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(g.get_float("x.f").unwrap(), Some(0.5));
    assert_eq!(
        g.get_bool("tokenizer.ggml.add_bos_token").unwrap(),
        Some(true)
    );
    assert!(g.get_str("x.f").is_err());
    let a = g.tensor_info("a").unwrap();
    assert_eq!(
        (a.shape(), a.dtype, a.size_in_bytes()),
        (vec![2, 4], GgmlType::F32, 32)
    );
    let bq = g.tensor_info("b").unwrap();
    assert_eq!(
        (bq.dims.clone(), bq.size_in_bytes(), bq.offset),
        (vec![32, 2], 68, 32)
    );
    // Special ids: eos and eot are the same token, listed once; bos defaults to 1 (SPM).
    assert_eq!(
        g.special_ids(),
        SpecialIds {
            bos: Some(1),
            eos: vec![2]
        }
    );
    // Tensor data, through a file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.gguf");
    std::fs::write(&p, &b).unwrap();
    let g = GgufFile::open(&p).unwrap();
    let d = g.tensor_data("a").unwrap();
    assert_eq!(&d.as_ref()[4..8], &1f32.to_le_bytes());
    assert_eq!(g.tensor_data("b").unwrap().as_ref(), &[7u8; 68][..]);
    // A cut file: the header-only reader still reads it, tensor data is an error.
    std::fs::write(&p, &b[..b.len() - 40]).unwrap();
    assert!(GgufFile::open(&p)
        .unwrap_err()
        .to_string()
        .contains("truncated"));
    let g = GgufFile::open_header(&p).unwrap();
    assert!(g
        .tensor_data("b")
        .unwrap_err()
        .to_string()
        .contains("past the end"));
    // A missing file keeps the io::Error and the path.
    let e = GgufFile::open(&dir.path().join("none.gguf")).unwrap_err();
    assert!(
        matches!(&e, GgufError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    );
    assert!(e.to_string().contains("none.gguf"));
}

#[test]
fn a_bool_byte_other_than_0_or_1_is_an_error() {
    let b = sample();
    // The value byte of add_bos_token follows its key and type.
    let key = b"tokenizer.ggml.add_bos_token";
    let at = b.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
    assert_eq!(b[at], 1);
    let mut bad = b.clone();
    bad[at] = 2;
    let e = parse(&bad, true).unwrap_err().to_string();
    assert!(e.contains("bool byte 2"), "{e}");
}

#[test]
fn the_writer_rejects_inconsistent_input() {
    let mut out = Vec::new();
    let t = TensorOut {
        name: "x",
        shape: &[2, 32],
        dtype: GgmlType::Q8_0,
        data: &[0u8; 10],
    };
    assert!(write(&mut out, &[], &[t])
        .unwrap_err()
        .to_string()
        .contains("needs 68 bytes"));
    let mixed = Value::Array(vec![Value::U32(1), Value::I32(1)]);
    assert!(write(&mut out, &[("k".into(), mixed)], &[]).is_err());
    assert!(out.is_empty());
}

#[test]
fn unknown_and_removed_types_are_named() {
    let b = sample();
    // The type id of tensor "a" follows its name, n_dims and two dims.
    let at = b
        .windows(9)
        .rposition(|w| w == b"\x01\0\0\0\0\0\0\0a")
        .unwrap()
        + 9
        + 4
        + 16;
    for (id, msg) in [(77u32, "unknown"), (4, "removed")] {
        let mut bad = b.clone();
        bad[at..at + 4].copy_from_slice(&id.to_le_bytes());
        let e = parse(&bad, true).unwrap_err().to_string();
        assert!(e.contains("not supported") && e.contains(msg), "{e}");
    }
    // A type aha-model does not run is still a valid file here (the tokenizer reads it).
    let mut iq = b.clone();
    iq[at..at + 4].copy_from_slice(&24u32.to_le_bytes()); // I8
    assert!(parse(&iq, false).is_ok());
}

#[test]
fn names_map_both_ways() {
    for (hf, gg) in [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("lm_head.weight", "output.weight"),
        (
            "model.layers.12.self_attn.o_proj.weight",
            "blk.12.attn_output.weight",
        ),
        ("model.layers.0.self_attn.k_proj.bias", "blk.0.attn_k.bias"),
        (
            "model.layers.3.post_attention_layernorm.weight",
            "blk.3.ffn_norm.weight",
        ),
    ] {
        assert_eq!(gguf_name(hf).as_deref(), Some(gg));
        assert_eq!(hf_name(gg).as_deref(), Some(hf));
    }
    assert_eq!(gguf_name("model.layers.x.mlp.up_proj.weight"), None);
    assert_eq!(hf_name("blk.0.ffn_gate_exps.weight"), None);
}

#[test]
fn permute_rows_round_trips_and_interleaves() {
    // 2 heads of 4 rows, one byte a row: HF [0 1 2 3] -> GGUF [0 2 1 3] per head.
    let hf: Vec<u8> = (0..8).collect();
    let gg = permute_rows(&hf, 8, 2, false).unwrap();
    assert_eq!(gg, vec![0, 2, 1, 3, 4, 6, 5, 7]);
    assert_eq!(permute_rows(&gg, 8, 2, true).unwrap(), hf);
    assert!(permute_rows(&hf, 8, 3, true).is_err());
}

#[test]
fn fuzz_corpus_parses_or_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut n = 0;
    for sub in ["gguf_header", "gguf_vocab"] {
        for f in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
            let b = std::fs::read(f.path()).unwrap();
            let _ = parse(&b, true);
            let _ = parse(&b, false).map(|g| g.special_ids());
            n += 1;
        }
    }
    assert!(n > 300, "{n} seeds");
    // Found by the fuzzer once: a 0 dimension that hid an overflowing shape product.
    let b = std::fs::read(dir.join("gguf_header/zero-dimension-overflow")).unwrap();
    assert!(parse(&b, true)
        .unwrap_err()
        .to_string()
        .contains("dimension is 0"));
}
