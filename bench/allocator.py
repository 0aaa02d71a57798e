"""A causal LM's training steps on CPU with glibc's malloc keeping the memory they free
(`tasks.core.allocator`) against its defaults.

    python bench/allocator.py [--steps 100] [--repeats 3]

Trains what `bench/peer.py` trains (the tiny causal LM, 1,000 alpaca rows and their preference
pairs, LoRA r=8 on every linear layer, batch 8, max length 256, seed 42), SFT and DPO, the way
`tuneline run` trains them (whole logits, right padding without a mask). The malloc setting
holds for a whole process, so every run is a fresh process of this script (`--one`), the two
settings alternating within each repeat, the order turning; each builds the model and the trainer
as a run does before its steps. Prints the steps' seconds (the trainer's `train_runtime`), the
minor page faults per step and the process's peak RSS, the ratios kept / default, and checks
that every logged loss is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SETTINGS = ("default", "kept")


def one(setting: str, part: str, model: Path, files: dict[str, Path], steps: int) -> None:
    """One run in this process: print its figures as a JSON line."""
    import lm_head

    from tasks.core import allocator

    if setting == "kept":
        allocator.reuse_freed_memory()
    prepared = lm_head.prepare(part, model, files)
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        run = lm_head.train_once(part, "whole+unmasked", prepared, steps, Path(out))
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {"train_s": run["train_s"], "faults_per_step": faults / steps, "peak_rss_mb": peak_mb}
    print(json.dumps({**figures, "losses": run["losses"]}), flush=True)


def run_one(setting: str, part: str, work: Path, steps: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", setting, "--part", part, "--work", str(work)]
    done = subprocess.run(
        [*command, "--steps", str(steps)],
        capture_output=True,
        text=True,
        env={**os.environ, "TUNELINE_HOME": str(work / "home")},
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        sys.exit(f"{setting} {part} failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(lines[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--part", choices=["sft", "dpo", "both"], default="both")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--one", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        files = {k: Path(v) for k, v in json.loads((args.work / "files.json").read_text()).items()}
        one(args.one, args.part, args.work / "model", files, args.steps)
        return
    parts = ["sft", "dpo"] if args.part == "both" else [args.part]

    import peer
    from transformers import AutoTokenizer

    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_at_start": os.getloadavg(),
        "steps": args.steps,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = peer.build_model(work)
        if model != work / "model":
            (work / "model").symlink_to(model)
        eos = AutoTokenizer.from_pretrained(model).eos_token
        files = peer.write_data(work, 1000, eos)
        (work / "files.json").write_text(json.dumps({k: str(v) for k, v in files.items()}))
        for part in parts:
            for repeat in range(args.repeats):
                order = SETTINGS if repeat % 2 == 0 else SETTINGS[::-1]
                runs = {s: run_one(s, part, work, args.steps) for s in order}
                default, kept = runs["default"], runs["kept"]
                row = {
                    "part": part,
                    "repeat": repeat,
                    **{
                        f"{s}_{k}": round(runs[s][k], 3)
                        for s in SETTINGS
                        for k in default
                        if k != "losses"
                    },
                    "steps_ratio": round(kept["train_s"] / default["train_s"], 3),
                    "same_losses": kept["losses"] == default["losses"],
                    "final_loss": default["losses"][-1],
                }
                result["runs"].append(row)
                print(json.dumps(row), flush=True)
                if not row["same_losses"]:
                    print(f"WARNING: {part} losses differ", file=sys.stderr)
    result["load_average_at_end"] = os.getloadavg()
    for part in parts:
        ratios = [r["steps_ratio"] for r in result["runs"] if r["part"] == part]
        print(
            f"{part}: steps kept / default, median of {len(ratios)}: {statistics.median(ratios):.3f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"allocator-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {path}")


if __name__ == "__main__":
    main()
