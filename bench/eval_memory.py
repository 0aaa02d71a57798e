"""Memory and time of scoring the eval rows of a causal LM (the eval loss, DPO's preference
log-probabilities), against the way it was done before, in the same script:

    python bench/eval_memory.py [--cases 749:64,32000:64,151936:16] [--rows 64]

Each case is `vocabulary:batch rows`. The model is a randomly initialised 2-layer Llama (hidden size
64) with that vocabulary: the body costs little, so what grows is the logits. The rows are
120-255 tokens, the second half of each scored, as a completion after its prompt. Each way runs in a
fresh process; the peak is the process's resident memory sampled every 2 ms above what it held
before scoring.

- before: the whole batch projected onto the vocabulary at every position, then its log-softmax
  (two `[rows, length, vocabulary]` float32 tensors);
- now: `tasks.models.inference.token_logprobs`: only the positions that predict a scored token
  are projected, log-probabilities as logit minus log-sum-exp a row at a time, and a batch holds
  at most `LOGITS_BUDGET` logits.

Prints seconds, peak MB, the ratios now/before and the largest difference between the two ways'
per-row sums (the same figures up to float rounding).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, random, sys, threading, time
import psutil, torch
from transformers import LlamaConfig, LlamaForCausalLM
sys.path.insert(0, sys.argv[5])
from tasks.models.inference import _pad, token_logprobs

def before(model, ids, scored, pad_id, batch):
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    results = {}
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            input_ids, attention = _pad([ids[i] for i in idx], pad_id)
            marks, _ = _pad([scored[i] for i in idx], 0)
            logits = model(input_ids=input_ids, attention_mask=attention).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            picked = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            weight = marks[:, 1:].float() * attention[:, 1:].float()
            sums = (picked * weight).sum(-1).tolist()
            counts = weight.sum(-1).tolist()
            for j, i in enumerate(idx):
                results[i] = (float(sums[j]), int(counts[j]))
    return [results[i] for i in range(len(ids))]

way, vocab, batch, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                     pad_token_id=1)
model = LlamaForCausalLM(config).eval()
rng = random.Random(0)
ids = [[rng.randrange(2, vocab) for _ in range(rng.randrange(120, 256))] for _ in range(rows)]
scored = [[0] * (len(r) // 2) + [1] * (len(r) - len(r) // 2) for r in ids]
score = before if way == "before" else token_logprobs
score(model, ids[:2], scored[:2], 1, batch)  # first-call costs out of the timing
process = psutil.Process()
held = process.memory_info().rss
peak = [held]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        time.sleep(0.002)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
started = time.perf_counter()
figures = score(model, ids, scored, 1, batch)
seconds = time.perf_counter() - started
done.set()
sampler.join()
print(json.dumps({"seconds": seconds, "peak_mb": (peak[0] - held) / 2**20, "figures": figures}))
"""


def run(way: str, vocab: int, batch: int, rows: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, way, str(vocab), str(batch), str(rows), str(ROOT)],
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    if done.returncode != 0:
        raise SystemExit(f"{way} V={vocab} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="749:64,32000:64,151936:16")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = []
    print(
        f"{'vocab':>7} {'batch':>5} | {'before s':>8} {'MB':>7} | {'now s':>6} {'MB':>6} | "
        f"{'time':>6} {'memory':>6} | max |diff|"
    )
    for case in args.cases.split(","):
        vocab, batch = (int(x) for x in case.split(":"))
        old = run("before", vocab, batch, args.rows)
        new = run("now", vocab, batch, args.rows)
        diff = max(abs(a[0] - b[0]) for a, b in zip(old["figures"], new["figures"], strict=True))
        assert [a[1] for a in old["figures"]] == [b[1] for b in new["figures"]]
        row = {
            "vocab": vocab,
            "batch": batch,
            "rows": args.rows,
            "before": {k: old[k] for k in ("seconds", "peak_mb")},
            "now": {k: new[k] for k in ("seconds", "peak_mb")},
            "time_ratio": new["seconds"] / old["seconds"],
            "memory_ratio": new["peak_mb"] / max(old["peak_mb"], 1e-9),
            "max_abs_diff": diff,
        }
        results.append(row)
        print(
            f"{vocab:>7} {batch:>5} | {old['seconds']:8.2f} {old['peak_mb']:7.0f} | "
            f"{new['seconds']:6.2f} {new['peak_mb']:6.0f} | {row['time_ratio']:5.2f}x "
            f"{row['memory_ratio']:5.2f}x | {diff:.2e}",
            flush=True,
        )
    if args.json:
        args.json.write_text(
            json.dumps({"machine": f"{os.cpu_count()} cores", "results": results}, indent=1)
        )


if __name__ == "__main__":
    main()
