#!/usr/bin/env python3
"""The official `openai` client against `aha serve`: models, chat (whole and streamed),
completions. Exits non-zero on any mismatch.

    pip install openai
    python3 scripts/serve/openai_client.py --url http://127.0.0.1:8080/v1
"""
import argparse

from openai import OpenAI


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080/v1")
    ap.add_argument("--key", default="none")
    a = ap.parse_args()
    client = OpenAI(base_url=a.url, api_key=a.key)

    models = client.models.list()
    model = models.data[0].id
    print("models:", [m.id for m in models.data])

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    whole = client.chat.completions.create(model=model, messages=messages, max_tokens=40, temperature=0)
    text = whole.choices[0].message.content
    print("chat:", repr(text), whole.choices[0].finish_reason, whole.usage)
    assert whole.usage.completion_tokens > 0

    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=40, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    parts, usage = [], None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                parts.append(c.delta.content)
    streamed = "".join(parts)
    print("chat stream:", repr(streamed), usage)
    assert streamed == text, "streamed and whole answers differ"
    assert usage.completion_tokens == whole.usage.completion_tokens

    many = client.chat.completions.create(model=model, messages=messages, max_tokens=20, temperature=0.8,
                                          n=3, seed=1, logprobs=True, top_logprobs=2)
    assert len(many.choices) == 3
    assert len(many.choices[0].logprobs.content[0].top_logprobs) == 2
    print("n=3:", [c.message.content for c in many.choices])

    comp = client.completions.create(model=model, prompt="The capital of France is", max_tokens=12, temperature=0)
    print("completion:", repr(comp.choices[0].text), comp.usage)
    ids = client.completions.create(model=model, prompt=[1, 2, 3], max_tokens=4, temperature=0)
    assert ids.usage.prompt_tokens == 3

    try:
        client.chat.completions.create(model=model, messages=[], max_tokens=5)
        raise SystemExit("an empty messages list was accepted")
    except Exception as e:  # openai.BadRequestError
        print("empty messages ->", type(e).__name__, getattr(e, "status_code", None))
        assert getattr(e, "status_code", None) == 400
    print("ok")


if __name__ == "__main__":
    main()
