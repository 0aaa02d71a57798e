"""Benchmark: every encoder method compared on rt-polarity (2,000 train rows, 1,000 eval rows,
MiniLM-L6), through `tuneline compare`. Prints the table; writes it to bench/results/.

    python bench/compare_methods.py [--methods probe,lora] [--data ../shared/datasets/rt-polarity]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rt_polarity import DEFAULT_DATA, recipe_text, write_split  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train, evaluation = write_split(work / "data", args.data)
        recipe = work / "recipe.yaml"
        method = "{name: lora, r: 4, lora_alpha: 16, target_modules: [query, key, value, dense]}"
        recipe.write_text(recipe_text(train, evaluation, "bench-rt-polarity", method))
        env = {**os.environ, "TUNELINE_HOME": str(work / "home")}
        command = [sys.executable, "-m", "tuneline", "compare", str(recipe), "--json"]
        if args.methods:
            command += ["--methods", args.methods]
        started = time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        raise SystemExit(proc.returncode)
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    print(proc.stdout.rsplit("\n", 2)[0])
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        f"wall time of the whole comparison: {wall:.0f}s",
        "",
        "| method | accuracy | macro-F1 | trainable share | train s | peak MB | lr |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['metrics']['accuracy']:.4f} | {r['metrics']['f1']:.4f} | "
            f"{r['trainable_share']:.3%} | {r['train_seconds']:.0f} | {r['peak_memory_mb']:.0f} | "
            f"{r['learning_rate']:g} |"
        )
    report = "\n".join(lines)
    print(report)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "compare_methods.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
