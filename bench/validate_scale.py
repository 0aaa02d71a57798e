"""Benchmark: validating classification data at 100,000 and 1,000,000 rows (after import).

Rows are rt-polarity sentences (../shared/datasets/rt-polarity) with a row number appended, so
every row is distinct text of realistic length. Times loading (JSONL -> normalised table, cached
parquet) and the classification contract (GX suites on train and eval, plain checks, MinHash and
n-gram checks on their 10,000-row samples), in this process, for both sizes; prints the ratio.

    python bench/validate_scale.py [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rt_polarity import DEFAULT_DATA, sentences  # noqa: E402


def write_rows(path: Path, n: int, sentences: list[tuple[str, str]], offset: int = 0) -> None:
    with path.open("w") as handle:
        for i in range(n):
            text, label = sentences[(i + offset) % len(sentences)]
            handle.write(json.dumps({"text": f"{text} #{i + offset}", "label": label}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    args = parser.parse_args()
    pairs = sentences(DEFAULT_DATA)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TUNELINE_HOME"] = str(Path(tmp) / "home")
        import datasketch  # noqa: F401
        import great_expectations  # noqa: F401  (timed "after import", as the target says)

        from tasks.data.load import DataSpec, load
        from tasks.validation.contract import validate

        results = {}
        for n in [int(s) for s in args.sizes.split(",")]:
            train, held = Path(tmp) / f"train-{n}.jsonl", Path(tmp) / f"eval-{n}.jsonl"
            write_rows(train, n, pairs)
            write_rows(held, max(n // 100, 100), pairs, offset=n)
            spec = DataSpec(train=str(train), eval=str(held), labels=["negative", "positive"])
            started = time.perf_counter()
            data = load(spec)
            loaded = time.perf_counter()
            report = validate(data, None)
            done = time.perf_counter()
            results[n] = (loaded - started, done - loaded, done - started, report.passed)
            print(
                f"{n:>9,} rows: load {loaded - started:6.2f}s  contract {done - loaded:6.2f}s  "
                f"total {done - started:6.2f}s  passed={report.passed} "
                f"warnings={[c.name for c in report.warnings]}",
                flush=True,
            )
        sizes = sorted(results)
        if len(sizes) == 2:
            small, large = sizes
            ratio = results[large][2] / results[small][2]
            print(
                f"cost ratio {large:,} / {small:,} rows: {ratio:.2f}x for {large / small:.0f}x rows"
            )


if __name__ == "__main__":
    main()
