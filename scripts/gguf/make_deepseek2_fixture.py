#!/usr/bin/env python3
"""A tiny `deepseek2` GGUF made by llama.cpp's own converter, for
crates/aha-model/tests/gguf_deepseek2.rs.

The HF fixture crates/aha-model/tests/fixtures/deepseek_v3_default (DeepSeek-V3: MLA with
q_lora, 3 layers of which 1 dense, 16 routed experts in 4 groups, 1 shared expert, sigmoid
routing with e_score_correction_bias) is copied to a temp dir and converted, in f32, with
llama.cpp's convert_hf_to_gguf.py (the copy vendored in llama-cpp-python's sdist). Two
things are supplied that the fixture lacks:

* a tokenizer: a byte-level BPE of 256 tokens (the GPT-2 byte alphabet, byte 0xFF replaced
  by one merge, "Ġt", since llama.cpp refuses a BPE vocabulary without merges), so that the
  vocabulary matches the model's 256 rows and the file stays small;
* the pre-tokenizer name: the converter identifies the pre-tokenizer by hashing how the
  tokenizer splits a test string, which no tiny vocabulary reproduces, so its
  `get_vocab_base_pre` is patched to answer "deepseek-v3" (DeepSeek-V3/R1's own).

Everything else (metadata, tensor names, the kv_b split into attn_k_b / attn_v_b, the
stacked experts) is the converter's own output; config.json gets the Hub's explicit
`scoring_func: sigmoid` (see below). A YaRN variant of the same model is converted too; only
its rope metadata and llama.cpp's logits are kept (llama_cpp_logits_yarn.json). If llama-cpp-python can load the file,
llama.cpp's logits for a few fixed token ids are written to llama_cpp_logits.json.

usage: make_deepseek2_fixture.py LLAMA_CPP_DIR OUT_DIR [HF_FIXTURE_DIR]
  LLAMA_CPP_DIR: vendor/llama.cpp of the llama-cpp-python 0.3.36 sdist
  (pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36; only the unpacked
  source is needed). Needs torch, transformers, numpy, llama-cpp-python.
"""
import hashlib, json, os, shutil, subprocess, sys, tempfile

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.abspath(os.path.join(here, "..", ".."))
lcp = os.path.abspath(sys.argv[1])
out = os.path.abspath(sys.argv[2])
hf = os.path.abspath(sys.argv[3]) if len(sys.argv) > 3 else os.path.join(
    repo, "crates/aha-model/tests/fixtures/deepseek_v3_default")
os.makedirs(out, exist_ok=True)
IDS = [1, 17, 42, 99, 200, 255, 7, 128, 3, 64]

src = tempfile.mkdtemp()
for f in os.listdir(hf):
    if f in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(os.path.join(hf, f), src)
# transformers 5 leaves DeepSeek-V3's routing defaults out of config.json; the Hub's
# DeepSeek-V3/R1 config.json names them, and without scoring_func the converter writes no
# expert_gating_func, which llama.cpp then takes as softmax (the V2 default). Name them as
# the Hub's config does (the HF model is the same: these are its defaults).
with open(os.path.join(src, "config.json")) as f:
    cfg = json.load(f)
cfg.setdefault("scoring_func", "sigmoid")
cfg.setdefault("topk_method", "noaux_tc")
with open(os.path.join(src, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


alphabet = bytes_to_unicode()
vocab = {alphabet[b]: b for b in range(255)}
vocab["Ġt"] = 255
tokenizer = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [],
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                      "use_regex": True},
    "post_processor": None,
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None,
              "continuing_subword_prefix": None, "end_of_word_suffix": None,
              "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
              "vocab": vocab, "merges": [["Ġ", "t"]]},
}
with open(os.path.join(src, "tokenizer.json"), "w") as f:
    json.dump(tokenizer, f, ensure_ascii=False)
with open(os.path.join(src, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None,
               "eos_token": None, "model_max_length": 512}, f)

gguf_path = os.path.join(out, "model.gguf")
# The same model with DeepSeek-V3-style YaRN (mscale == mscale_all_dim, as in the Hub's
# DeepSeek-V3/R1 config.json; the converter keeps only 0.1 * mscale_all_dim): converted too,
# but only its rope metadata and llama.cpp's logits are kept (the Rust test adds that
# metadata to model.gguf), so the fixture stays small.
YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}
yarn_src = tempfile.mkdtemp()
for f in os.listdir(src):
    shutil.copy(os.path.join(src, f), yarn_src)
cfg["rope_scaling"] = YARN
with open(os.path.join(yarn_src, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
yarn_path = os.path.join(yarn_src, "yarn.gguf")


def convert(model_dir, outfile):
    # Run the converter in a child process with the pre-tokenizer detection patched.
    runner = f"""
import sys, runpy
sys.path.insert(0, {lcp!r})
sys.argv = ["convert_hf_to_gguf.py", {model_dir!r}, "--outtype", "f32", "--outfile", {outfile!r},
            "--model-name", "deepseek2-tiny-fixture"]
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "deepseek-v3"
runpy.run_path({os.path.join(lcp, "convert_hf_to_gguf.py")!r}, run_name="__main__")
"""
    subprocess.run([sys.executable, "-c", runner], check=True)


convert(src, gguf_path)
convert(yarn_src, yarn_path)


def sha256(p):
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


sys.path.insert(0, os.path.join(lcp, "gguf-py"))
import gguf  # noqa: E402  (the converter's own gguf-py)

reader = gguf.GGUFReader(gguf_path)
tensors = {t.name: [int(d) for d in t.shape] for t in reader.tensors}
yarn_reader = gguf.GGUFReader(yarn_path)
yarn_meta = {k: f.contents() for k, f in yarn_reader.fields.items() if ".rope.scaling." in k}
provenance = {
    "made_by": "scripts/gguf/make_deepseek2_fixture.py",
    "converter": "llama.cpp convert_hf_to_gguf.py from the llama-cpp-python 0.3.36 sdist (vendor/llama.cpp), --outtype f32",
    "source": os.path.relpath(hf, repo),
    "source_sha256": {f: sha256(os.path.join(hf, f)) for f in ("config.json", "model.safetensors")},
    "config_added": {"scoring_func": "sigmoid", "topk_method": "noaux_tc"},
    "tokenizer": "tiny byte-level BPE (255 byte tokens + 1 merge), pre-tokenizer name patched to deepseek-v3",
    "gguf_sha256": sha256(gguf_path),
    "tensors_ggml_dims": tensors,
    "yarn_variant": {"rope_scaling": YARN, "gguf_rope_metadata": yarn_meta},
}


def llama_cpp_logits(path):
    import numpy as np
    import llama_cpp

    # An f32 KV cache (type 0): llama.cpp's default f16 cache rounds MLA's latent, which
    # moves these logits by about 1e-3.
    llm = llama_cpp.Llama(model_path=path, n_ctx=64, n_batch=64, logits_all=True,
                          verbose=False, seed=0, n_threads=1, type_k=0, type_v=0)
    llm.eval(IDS)
    scores = np.array(llm.scores[: len(IDS)], dtype=np.float32)
    return {"llama_cpp_python": llama_cpp.__version__, "kv_cache": "f32", "ids": IDS,
            "logits": [[float(x) for x in row] for row in scores]}


try:
    with open(os.path.join(out, "llama_cpp_logits.json"), "w") as f:
        json.dump(llama_cpp_logits(gguf_path), f)
    yarn = llama_cpp_logits(yarn_path)
    yarn["rope_metadata"] = yarn_meta
    with open(os.path.join(out, "llama_cpp_logits_yarn.json"), "w") as f:
        json.dump(yarn, f)
    import llama_cpp
    provenance["llama_cpp_logits"] = f"llama_cpp.Llama(..., type_k=0, type_v=0).eval(ids) (f32 KV cache), llama-cpp-python {llama_cpp.__version__}"
except Exception as e:  # llama.cpp could not load or run the file: say so, keep the GGUF
    provenance["llama_cpp_logits"] = f"not recorded: {type(e).__name__}: {e}"
    print(provenance["llama_cpp_logits"], file=sys.stderr)

with open(os.path.join(out, "provenance.json"), "w") as f:
    json.dump(provenance, f, indent=1)
shutil.rmtree(src)
shutil.rmtree(yarn_src)
print("wrote", out)
