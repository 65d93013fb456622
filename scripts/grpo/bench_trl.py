"""Wall time and peak memory of GRPO steps with TRL's GRPOTrainer on CPU, for the side-by-side
with `aha grpo` (scripts/grpo/bench.sh runs both). Same model directory, the same GSM8K
prompts in the R1-Zero template, G samples per prompt, a fixed completion length (EOS ignored
by a random model in practice; min_new_tokens forces it), beta as given.
Usage: bench_trl.py MODEL_DIR DATASET.jsonl [--prompts 2 --group 8 --max-tokens 64 --steps 3]
Prints one JSON line per step: {"step", "wall_s"} and a summary line."""
import argparse, json, time, resource, os
import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

R1_ZERO = ("A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant first "
           "thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning process and "
           "answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
           "here </think> <answer> answer here </answer>. User: {prompt}. Assistant:")

ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("dataset")
ap.add_argument("--prompts", type=int, default=2)
ap.add_argument("--group", type=int, default=8)
ap.add_argument("--max-tokens", type=int, default=64)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--beta", type=float, default=0.001)
ap.add_argument("--threads", type=int, default=0)
a = ap.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)

rows = [json.loads(l) for l in open(a.dataset) if l.strip()][: a.prompts * a.steps]
ds = Dataset.from_list([{"prompt": R1_ZERO.format(prompt=r["question"]), "answer": r["answer"]} for r in rows])

def format_reward(completions, **kw):
    import re
    return [1.0 if re.fullmatch(r"\s*<think>.+?</think>\s*<answer>.+?</answer>\s*", c, re.S) else 0.0 for c in completions]

def accuracy_reward(completions, answer, **kw):
    out = []
    for c, g in zip(completions, answer):
        gold = g.split("####")[-1].strip()
        out.append(1.0 if gold and gold in c else 0.0)
    return out

class Timer(TrainerCallback):
    def __init__(self): self.t = None; self.times = []
    def on_step_begin(self, args, state, control, **kw): self.t = time.perf_counter()
    def on_step_end(self, args, state, control, **kw):
        dt = time.perf_counter() - self.t; self.times.append(dt)
        print(json.dumps({"impl": "trl", "step": state.global_step, "wall_s": dt}), flush=True)

cfg = GRPOConfig(output_dir="/tmp/aha-grpo/trl-out", use_cpu=True, bf16=False, fp16=False, report_to="none", save_strategy="no",
                 logging_steps=1, max_steps=a.steps, learning_rate=1e-6, per_device_train_batch_size=a.prompts * a.group,
                 gradient_accumulation_steps=1, num_generations=a.group, max_completion_length=a.max_tokens, temperature=1.0,
                 beta=a.beta, loss_type="grpo", scale_rewards="group", num_iterations=1, seed=0, shuffle_dataset=False,
                 generation_kwargs={"min_new_tokens": a.max_tokens}, dataloader_num_workers=0)
timer = Timer()
trainer = GRPOTrainer(model=a.model, reward_funcs=[accuracy_reward, format_reward], args=cfg, train_dataset=ds, callbacks=[timer])
trainer.train()
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
warm = timer.times[1:] or timer.times
print(json.dumps({"impl": "trl", "summary": True, "steps": len(timer.times), "first_step_s": timer.times[0],
                  "warm_step_s": sum(warm) / len(warm), "peak_rss_mb": peak_mb, "threads": torch.get_num_threads()}), flush=True)
