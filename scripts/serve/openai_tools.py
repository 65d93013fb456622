#!/usr/bin/env python3
"""The official `openai` client with `tools` against `aha serve`: forced (`required`, named)
tool calls whole and streamed, arguments checked against each tool's parameter schema, and a
second turn that carries the call and its result. Exits non-zero on any mismatch.

Any model whose chat template writes tool calls will do; without real weights, a random model
around the real DeepSeek-R1 tokenizer exercises R1's tool-call tokens:

    pip install openai numpy safetensors
    python3 scripts/serve/random_model.py --tokenizer .cache/assets/deepseek-r1-tokenizer --out /tmp/r1-random
    aha serve --model /tmp/r1-random --port 8080 &
    python3 scripts/serve/openai_tools.py --url http://127.0.0.1:8080/v1

A random model thinks at random, so the requests cap the reasoning (`thinking_budget`, an aha
extension) to reach the answer, where the constraint engine writes the calls.
"""
import argparse
import json

from openai import OpenAI

TOOLS = [
    {"type": "function", "function": {
        "name": "calculator", "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string", "maxLength": 40}},
                       "required": ["expression"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 30},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"], "additionalProperties": False}}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def check_arguments(name, arguments):
    """The arguments against the tool's schema (the keywords these schemas use)."""
    schema = SCHEMAS[name]
    args = json.loads(arguments)
    assert isinstance(args, dict), arguments
    for key in schema["required"]:
        assert key in args, f"{name}: {key} missing in {arguments}"
    for key, value in args.items():
        spec = schema["properties"].get(key)
        assert spec is not None, f"{name}: unexpected {key} in {arguments}"
        assert isinstance(value, str), f"{name}: {key} is not a string in {arguments}"
        assert len(value) <= spec.get("maxLength", 10**9), arguments
        if "enum" in spec:
            assert value in spec["enum"], arguments


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080/v1")
    ap.add_argument("--key", default="none")
    ap.add_argument("--samples", type=int, default=4)
    a = ap.parse_args()
    client = OpenAI(base_url=a.url, api_key=a.key)
    model = client.models.list().data[0].id
    messages = [{"role": "user", "content": "What is 17 * 23, and is it warm in Paris?"}]
    common = dict(model=model, tools=TOOLS, max_tokens=200, temperature=0.8,
                  extra_body={"thinking_budget": 16})

    # tool_choice "required": one or more calls, every one valid.
    calls_seen = 0
    for seed in range(a.samples):
        r = client.chat.completions.create(messages=messages, tool_choice="required", seed=seed, **common)
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", c
        assert c.message.tool_calls, c
        for call in c.message.tool_calls:
            assert call.type == "function" and call.id, call
            check_arguments(call.function.name, call.function.arguments)
            calls_seen += 1
    print(f"required: {a.samples} responses, {calls_seen} calls, all valid")

    # A named function: exactly one call of it.
    named = {"type": "function", "function": {"name": "get_weather"}}
    r = client.chat.completions.create(messages=messages, tool_choice=named, seed=7, **common)
    calls = r.choices[0].message.tool_calls
    assert len(calls) == 1 and calls[0].function.name == "get_weather", calls
    check_arguments("get_weather", calls[0].function.arguments)
    print("named:", calls[0].function.name, calls[0].function.arguments)

    # Streamed: the argument deltas add up to the whole response's calls (same seed).
    stream = client.chat.completions.create(messages=messages, tool_choice=named, seed=7, stream=True, **common)
    parts, finish = {}, None
    for chunk in stream:
        for ch in chunk.choices:
            finish = ch.finish_reason or finish
            for d in ch.delta.tool_calls or []:
                p = parts.setdefault(d.index, {"name": "", "arguments": ""})
                if d.function and d.function.name:
                    p["name"] += d.function.name
                if d.function and d.function.arguments:
                    p["arguments"] += d.function.arguments
    streamed = [parts[i] for i in sorted(parts)]
    whole = [{"name": c.function.name, "arguments": c.function.arguments} for c in calls]
    assert finish == "tool_calls", finish
    assert streamed == whole, (streamed, whole)
    print("streamed calls equal the whole response's")

    # Second turn: the call and its result go back through the template.
    first = client.chat.completions.create(messages=messages, tool_choice=named, seed=7, **common)
    call = first.choices[0].message.tool_calls[0]
    history = messages + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21, "unit": "celsius"})},
    ]
    second = client.chat.completions.create(messages=history, tool_choice="none", seed=1, **common)
    assert second.choices[0].message.tool_calls in (None, []), second
    # The call and the result are in the prompt: it is longer than the question alone.
    alone = client.chat.completions.create(messages=messages, tool_choice="none", seed=1, **common)
    assert second.usage.prompt_tokens > alone.usage.prompt_tokens + 20, (second.usage, alone.usage)
    print("second turn:", second.choices[0].finish_reason, second.usage.prompt_tokens, "prompt tokens")

    # A forced choice of a tool that does not exist is a 400.
    try:
        bad = {"type": "function", "function": {"name": "nope"}}
        client.chat.completions.create(messages=messages, tool_choice=bad, **common)
        raise SystemExit("an unknown named tool was accepted")
    except Exception as e:  # openai.BadRequestError
        assert getattr(e, "status_code", None) == 400, e
        print("unknown named tool ->", getattr(e, "status_code", None))
    print("ok")


if __name__ == "__main__":
    main()
