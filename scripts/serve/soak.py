#!/usr/bin/env python3
"""Soak a running `aha serve`: mixed traffic for a fixed time from several client threads
(short and long prompts, streaming and not, chat and completions, clients that hang up
mid-stream, malformed and invalid requests), then report failures and the server's memory.
Standard library only. Prints one JSON object; exits 1 if a well-formed request failed or
the server died.

    python3 scripts/serve/soak.py --url http://127.0.0.1:8080 --pid PID --minutes 10

Memory is the server's resident set (VmRSS from /proc/PID/status), sampled every 10 s; the
report gives it after warm-up (the first minute) and at the end.
"""
import argparse
import http.client
import json
import random
import threading
import time
import urllib.parse

SHORT = ["Hi.", "What is 2 + 3?", "Name a color.", "Say yes or no."]
LONG_PARA = ("The history of the printing press begins with movable type in East Asia and "
             "continues in Europe, where presses spread through trade cities. ")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class Client:
    def __init__(self, url, key):
        u = urllib.parse.urlparse(url)
        self.host, self.port, self.key = u.hostname, u.port, key

    def post(self, path, body, raw=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = "Bearer " + self.key
        conn.request("POST", path, raw if raw is not None else json.dumps(body), headers)
        return conn, conn.getresponse()


def chat_body(rng, stream):
    long = rng.random() < 0.3
    content = (LONG_PARA * rng.randint(4, 12) + "Summarize this.") if long else rng.choice(SHORT)
    return {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": rng.choice([8, 32, 96]),
        "temperature": rng.choice([0, 0.6, 1.0]),
        "seed": rng.randint(0, 1000),
        "n": rng.choice([1, 1, 1, 2]),
        "stream": stream,
    }


def one(client, rng, counts, lock):
    """One request of a random kind; returns the kind and whether it behaved as it must."""
    kind = rng.choices(
        ["chat", "chat_stream", "completion", "hangup", "malformed", "invalid"],
        weights=[3, 3, 2, 1, 1, 1],
    )[0]
    ok = False
    try:
        if kind in ("chat", "chat_stream"):
            stream = kind == "chat_stream"
            conn, r = client.post("/v1/chat/completions", chat_body(rng, stream))
            body = r.read()
            if r.status == 200:
                if stream:
                    ok = body.rstrip().endswith(b"data: [DONE]")
                else:
                    j = json.loads(body)
                    ok = all(c["finish_reason"] in ("stop", "length") for c in j["choices"])
            conn.close()
        elif kind == "completion":
            conn, r = client.post("/v1/completions", {
                "prompt": rng.choice(SHORT), "max_tokens": rng.choice([8, 48]),
                "temperature": 0.6, "seed": rng.randint(0, 99)})
            ok = r.status == 200 and "choices" in json.loads(r.read())
            conn.close()
        elif kind == "hangup":
            # Read a few stream lines, then drop the connection: the server must free the slot.
            body = chat_body(rng, True)
            body["max_tokens"] = 200
            conn, r = client.post("/v1/chat/completions", body)
            ok = r.status == 200
            for _ in range(rng.randint(1, 6)):
                if not r.readline():
                    break
            conn.sock.close()
            conn.close()
        elif kind == "malformed":
            conn, r = client.post("/v1/chat/completions", None, raw='{"messages": [')
            ok = r.status == 400 and "error" in json.loads(r.read())
            conn.close()
        else:
            bad = rng.choice([
                {"messages": []},
                {"messages": [{"role": "user", "content": "x"}], "max_tokens": 10**9},
                {"messages": [{"role": "user", "content": "x"}], "n": 10**6},
                {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
            ])
            conn, r = client.post("/v1/chat/completions", bad)
            ok = 400 <= r.status < 500 and "error" in json.loads(r.read())
            conn.close()
    except Exception as e:  # a refused connection, a reset: the server misbehaved
        with lock:
            counts.setdefault("exceptions", []).append(f"{kind}: {e!r}"[:200])
    with lock:
        c = counts.setdefault(kind, {"ok": 0, "failed": 0})
        c["ok" if ok else "failed"] += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--pid", type=int, required=True, help="the server's process id (for RSS)")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--key", default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    client = Client(a.url, a.key)
    counts, lock = {}, threading.Lock()
    rss = []
    start = time.time()
    end = start + 60 * a.minutes
    stop = threading.Event()

    def worker(i):
        rng = random.Random(a.seed * 1000 + i)
        while time.time() < end:
            one(client, rng, counts, lock)

    def sampler():
        while not stop.is_set():
            try:
                rss.append((round(time.time() - start, 1), rss_kib(a.pid)))
            except FileNotFoundError:
                rss.append((round(time.time() - start, 1), None))
                return
            stop.wait(10)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(a.clients)]
    s = threading.Thread(target=sampler)
    s.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    s.join()
    alive = rss[-1][1] is not None and rss_kib(a.pid) is not None
    warm = [r for t, r in rss if t >= 60 and r is not None]
    well_formed = ("chat", "chat_stream", "completion", "hangup")
    failed = sum(counts.get(k, {}).get("failed", 0) for k in counts if k in well_formed)
    report = {
        "minutes": a.minutes, "clients": a.clients, "server_alive": alive,
        "requests": {k: v for k, v in counts.items() if k != "exceptions"},
        "exceptions": counts.get("exceptions", [])[:10],
        "failed_well_formed": failed,
        "rss_mib_after_warmup": round(warm[0] / 1024, 1) if warm else None,
        "rss_mib_end": round(warm[-1] / 1024, 1) if warm else None,
        "rss_mib_max": round(max(warm) / 1024, 1) if warm else None,
        "rss_samples": rss,
    }
    print(json.dumps(report))
    raise SystemExit(0 if alive and failed == 0 and not counts.get("exceptions") else 1)


if __name__ == "__main__":
    main()
