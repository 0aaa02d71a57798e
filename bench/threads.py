"""How PyTorch's OpenMP threads behave when other jobs share the cores:

    python bench/threads.py [--steps 20] [--background 0,4]

Times LoRA training steps of the tiny causal LM (batch 8, 200 tokens) in a fresh process per
setting, OpenMP threads spinning while they wait (`OMP_WAIT_POLICY=ACTIVE`, libgomp's default for a
few hundred thousand spins) or sleeping (`PASSIVE`, tuneline's default since tasks/__init__.py
sets it), with 1 thread and with one per core, beside 0 or N busy-loop processes. Prints ms per
step and the ratios against spinning threads in the same background.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, os, sys, time
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
batch = torch.randint(0, model.config.vocab_size, (8, 200))
def step():
    model(input_ids=batch, labels=batch).loss.backward()
    optimiser.step()
    optimiser.zero_grad()
for _ in range(3):
    step()
started = time.perf_counter()
for _ in range(int(sys.argv[2])):
    step()
print(json.dumps({"ms_per_step": 1000 * (time.perf_counter() - started) / int(sys.argv[2])}))
"""


@contextlib.contextmanager
def background(processes: int) -> Any:
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


# How OpenMP threads wait: libgomp's own default (spin about 300,000 times, then sleep), spin
# forever, never spin, spin briefly.
POLICIES: dict[str, dict[str, str]] = {
    "default": {},
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin-10k": {"GOMP_SPINCOUNT": "10000"},
    "spin-100k": {"GOMP_SPINCOUNT": "100000"},
}


def run(model: Path, steps: int, policy: str, threads: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update({**POLICIES[policy], "OMP_NUM_THREADS": str(threads)})
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["ms_per_step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--background", default="0,4", help="busy loops beside, comma-separated")
    parser.add_argument("--policies", default=",".join(POLICIES), help=f"of {list(POLICIES)}")
    options = parser.parse_args()
    from tasks.models.tiny import build_tiny_causal_lm, default_corpus

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_causal_lm(Path(tmp) / "model", default_corpus())
        results = []
        for load in [int(x) for x in options.background.split(",")]:
            with background(load):
                row = {"background": load}
                for policy in options.policies.split(","):
                    for threads in sorted({1, cores}):
                        row[f"{policy}-{threads}"] = run(model, options.steps, policy, threads)
            results.append(row)
            spin = row[f"default-{cores}"]
            cells = ", ".join(
                f"{k} {v:.0f} ms ({v / spin:.2f}x)" for k, v in row.items() if k != "background"
            )
            print(f"{load} busy loops beside, {cores} cores: {cells}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
