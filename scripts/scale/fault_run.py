#!/usr/bin/env python3
"""GRPO on `aha serve` rollout workers over loopback, with faults (stdlib only).

1. Two workers; `aha grpo --rollout-url A --rollout-url B` for --steps steps, checkpointing
   every step. After step --kill-worker-at, worker B is killed; it is restarted on the same
   port --down seconds later (it comes back with its initial weights and must be re-synced).
   After step --kill-trainer-at the trainer is killed and started again with --resume.
   Checks: metrics.jsonl holds steps 1..N once each, in order; the final model exists.
2. --timing: synchronous vs --async step time on one worker (trainer and worker one thread
   each, so they can overlap on a 2-core machine), --runs alternated runs each.

Usage: python3 scripts/scale/fault_run.py --aha target/release/aha --model BASE_DIR \
          --dataset data.jsonl --out /tmp/fault [--timing]
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(aha, model, port, log):
    p = subprocess.Popen(
        [aha, "--threads", "1", "serve", "--model", model, "--port", str(port),
         "--logprobs-mode", "processed_logprobs"],
        stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return p
        except OSError:
            if p.poll() is not None:
                sys.exit(f"server on port {port} exited with {p.returncode}")
            time.sleep(0.1)
    sys.exit(f"server on port {port} did not come up")


def steps_done(metrics):
    try:
        with open(metrics) as f:
            return [json.loads(l)["step"] for l in f if l.strip()]
    except FileNotFoundError:
        return []


def grpo_cmd(a, urls, out, threads, extra=()):
    cmd = [a.aha, "--threads", str(threads), "grpo", "--model", a.model, "--dataset", a.dataset,
           "--template", a.template, "--reward", a.reward, "--group-size", str(a.group_size),
           "--batch-prompts", str(a.batch_prompts), "--steps", str(a.steps),
           "--max-tokens", str(a.max_tokens), "--lr", str(a.lr), "--samples-every", "0",
           "--save-every", "1", "--seed", "3", "--out", out]
    for u in urls:
        cmd += ["--rollout-url", u]
    return cmd + list(extra)


def fault_run(a):
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "servers.log"), "w")
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    servers = [start_server(a.aha, a.model, p, log) for p in ports]
    out = os.path.join(a.out, "run")
    metrics = os.path.join(out, "metrics.jsonl")
    tlog = open(os.path.join(a.out, "trainer.log"), "w")
    events = []
    t0 = time.time()
    trainer = subprocess.Popen(grpo_cmd(a, urls, out, 1), stdout=tlog, stderr=tlog)
    killed_worker = killed_trainer = False
    restart_at = None
    while True:
        done = steps_done(metrics)
        n = len(done)
        if not killed_worker and n >= a.kill_worker_at:
            servers[1].kill()
            servers[1].wait()
            killed_worker = True
            restart_at = time.time() + a.down
            events.append(f"{time.time() - t0:.1f}s: killed worker B after step {n}")
        if restart_at and time.time() >= restart_at:
            servers[1] = start_server(a.aha, a.model, ports[1], log)
            restart_at = None
            events.append(f"{time.time() - t0:.1f}s: restarted worker B (initial weights)")
        if not killed_trainer and n >= a.kill_trainer_at:
            trainer.send_signal(signal.SIGKILL)
            trainer.wait()
            killed_trainer = True
            events.append(f"{time.time() - t0:.1f}s: killed the trainer after step {n}")
            trainer = subprocess.Popen(grpo_cmd(a, urls, out, 1, ["--resume"]),
                                       stdout=tlog, stderr=tlog)
            events.append(f"{time.time() - t0:.1f}s: restarted the trainer with --resume")
        if trainer.poll() is not None:
            break
        time.sleep(0.05)
    wall = time.time() - t0
    # Every worker, the restarted one included, must hold the final weights.
    versions = []
    for u in urls:
        with urllib.request.urlopen(f"{u}/get_weight_version", timeout=10) as r:
            versions.append(json.load(r)["weight_version"])
    print(f"workers' weight versions at the end: {versions} (want {a.steps})")
    for s in servers:
        s.terminate()
        s.wait()
    done = steps_done(metrics)
    ok = trainer.returncode == 0 and done == list(range(1, a.steps + 1)) \
        and os.path.isfile(os.path.join(out, "final", "model.safetensors")) \
        and versions == [str(a.steps)] * 2
    for e in events:
        print(e)
    print(f"trainer exit {trainer.returncode}; steps in metrics.jsonl: {done}; wall {wall:.1f}s")
    with open(os.path.join(a.out, "trainer.log")) as f:
        lines = f.readlines()
    retries = sum("WARN" in l for l in lines)
    back = sum("back" in l and "INFO" in l for l in lines)
    print(f"trainer log: {retries} warnings (failed requests, syncs, re-contacts), {back} servers back")
    # The same run in-process, undisturbed: rollouts are seeded per sample, so which worker
    # served a group (or a retry) must not matter, and --resume is exact.
    clean = os.path.join(a.out, "clean")
    subprocess.run(grpo_cmd(a, [], clean, 1), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(metrics) as f:
        faulty = [json.loads(l) for l in f]
    with open(os.path.join(clean, "metrics.jsonl")) as f:
        undisturbed = [json.loads(l) for l in f]
    worst = 0.0
    for x, y in zip(faulty, undisturbed):
        for k in ("reward_mean", "grad_norm", "kl", "entropy", "completion_len_mean"):
            worst = max(worst, abs(x[k] - y[k]) / max(abs(y[k]), 1e-3))
    same = len(faulty) == len(undisturbed) and worst < 1e-3
    print(f"fault run vs undisturbed in-process run: largest relative difference {worst:.2e} "
          f"over reward, grad norm, KL, entropy, length")
    ok = ok and same
    print("FAULT RUN:", "PASS" if ok else "FAIL")
    return ok


def timing(a):
    """Synchronous vs asynchronous step time, alternated, one worker."""
    port = free_port()
    log = open(os.path.join(a.out, "timing-server.log"), "w")
    res = {"sync": [], "async": []}
    for r in range(a.runs):
        for mode in ("sync", "async"):
            srv = start_server(a.aha, a.model, port, log)
            out = os.path.join(a.out, f"t-{mode}-{r}")
            extra = ["--async"] if mode == "async" else []
            t = time.time()
            subprocess.run(grpo_cmd(a, [f"http://127.0.0.1:{port}"], out, 1, extra),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.time() - t
            srv.terminate()
            srv.wait()
            with open(os.path.join(out, "metrics.jsonl")) as f:
                ms = [json.loads(l) for l in f]
            stale = sum(m.get("stale_dropped", 0) for m in ms)
            gen = statistics.mean(m["time_sample_s"] for m in ms)
            train = statistics.mean(m["time_train_s"] for m in ms)
            wait = statistics.mean(m.get("time_wait_s", 0.0) for m in ms)
            res[mode].append(wall / a.steps)
            print(f"run {r} {mode}: {wall:.1f}s wall, {wall / a.steps:.2f} s/step "
                  f"(per step: generation {gen:.3f}s, training {train:.3f}s, waited {wait:.3f}s), "
                  f"stale dropped {stale}, reward last {ms[-1]['reward_mean']:.3f}, "
                  f"load {os.getloadavg()[0]:.2f}")
    for mode, v in res.items():
        print(f"{mode}: median {statistics.median(v):.2f} s/step (range {min(v):.2f}-{max(v):.2f})")
    print(f"async/sync step time: {statistics.median(res['async']) / statistics.median(res['sync']):.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aha", default="target/release/aha")
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--template", default="none")
    ap.add_argument("--reward", default="accuracy,format")
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--batch-prompts", type=int, default=4)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--kill-worker-at", type=int, default=3)
    ap.add_argument("--down", type=float, default=3.0)
    ap.add_argument("--kill-trainer-at", type=int, default=7)
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only-timing", action="store_true", help="skip the fault run")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    ok = a.only_timing or fault_run(a)
    if a.timing or a.only_timing:
        timing(a)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
