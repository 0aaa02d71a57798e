"""A causal LM's training steps on CPU, in one process: trl's vocabulary tiles for the LM head
against the whole logits, and right-padded batches with and without their attention mask.

    python bench/lm_head.py [--steps 100] [--repeats 3]

Builds what `bench/peer.py` trains (the tiny causal LM, 1,000 alpaca rows and their preference
pairs, LoRA r=8 on every linear layer, batch 8, max length 256, seed 42) and times the same
training run in three ways, in turn within each repeat (the order rotating), a fresh model each
run, SFT and DPO:

- `tiles`: trl's fused LM head on the labelled positions only, the attention mask as given
  (tuneline before these two changes);
- `whole`: small logits computed whole (`tasks.training.causal.lm_head.eager_lm_head`);
- `whole+unmasked`: and right-padded batches without their mask
  (`tasks.training.causal.padding.right_padding_unmasked`), as `tuneline run` trains now.

Prints the steps' seconds (the trainer's own `train_runtime`) and the ratios to `tiles`, and
checks that every logged loss is the same. Then times the head alone (forward and backward,
log-probabilities, entropy and top-1 hits) at the shapes of those batches and at larger ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import peer  # noqa: E402
from transformers import PrinterCallback  # noqa: E402

from tasks.data.load import DataSpec, load  # noqa: E402
from tasks.models.base import BaseModelSpec  # noqa: E402
from tasks.tokenization.encoding import TokenizeSpec, tokenize  # noqa: E402
from tasks.training import METHODS  # noqa: E402
from tasks.training.base import TrainSpec  # noqa: E402
from tasks.training.causal.lm_head import eager_lm_head, labelled_positions_only  # noqa: E402
from tasks.training.causal.padding import right_padding_unmasked  # noqa: E402
from tasks.training.causal.runner import load_tokenizer, make_trainer, prepare_model  # noqa: E402


def _whole_unmasked(trainer: Any) -> Any:
    stack = contextlib.ExitStack()
    stack.enter_context(eager_lm_head())
    stack.enter_context(right_padding_unmasked(trainer.model, getattr(trainer, "ref_model", None)))
    return stack


CONFIGS = {
    "tiles": lambda trainer: labelled_positions_only(),
    "whole": lambda trainer: eager_lm_head(),
    "whole+unmasked": _whole_unmasked,
}


def train_once(
    part: str, head: str, prepared: dict[str, Any], steps: int, out: Path
) -> dict[str, Any]:
    s = peer.SETTINGS
    base, method, tok, tokenizer = (prepared[k] for k in ("base", "method", "tok", "tokenizer"))
    spec = TrainSpec(
        max_steps=steps,
        batch_size=s["batch"],
        learning_rate=s["lr"],
        seed=s["seed"],
        warmup_ratio=0.0,
        group_by_length=False,
        logging_steps=peer.LOGGING_STEPS,
        eval_loss_points=0,
        mixed_precision="no",
    )
    model = prepare_model(base, method, tokenizer, seed=s["seed"], steps=steps)
    trainer = make_trainer(
        model, tokenizer, method, spec, tok, str(out), False, s["max_length"], [], base
    )
    trainer.remove_callback(PrinterCallback)  # figures below, not each log line
    with CONFIGS[head](trainer):
        output = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"train_s": output.metrics["train_runtime"], "losses": losses}


def prepare(part: str, model: Path, files: dict[str, Path]) -> dict[str, Any]:
    s = peer.SETTINGS
    base = BaseModelSpec(path=str(model))
    if part == "sft":
        data = DataSpec(train=str(files["train_alpaca"]), eval=None, format="alpaca")
        method = METHODS["sft"].config(
            packing=False, r=s["r"], lora_alpha=s["alpha"], lora_dropout=0.0
        )
    else:
        data = DataSpec(train=str(files["train_preference"]), eval=None, format="preference")
        method = METHODS["dpo"].config(
            beta=0.1, loss_type="sigmoid", r=s["r"], lora_alpha=s["alpha"], lora_dropout=0.0
        )
    tok = tokenize(load(data), base, TokenizeSpec(max_length=s["max_length"]), method)
    return {"base": base, "method": method, "tok": tok, "tokenizer": load_tokenizer(base)}


def head_alone(shapes: list[tuple[int, int, int]], repeats: int = 200) -> list[dict[str, Any]]:
    """Forward and backward of the head by itself: trl's function, and the whole-logits one."""
    import torch
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction

    from tasks.training.causal.lm_head import whole_log_probs

    outputs = ("log_probs", "entropy", "is_top1")
    rows = []
    for positions, hidden_size, vocab in shapes:
        generator = torch.Generator().manual_seed(0)
        hidden = torch.randn(positions, hidden_size, generator=generator)
        weight = torch.randn(vocab, hidden_size, generator=generator) * 0.02
        targets = torch.randint(0, vocab, (positions,), generator=generator)

        heads = {
            "tiles": lambda h, w, t: ChunkedLogProbFunction.apply(
                h, w, None, t, 1.0, 32768, None, 1.0, outputs
            ),
            "whole": lambda h, w, t: whole_log_probs().apply(
                h, w, None, t, 1.0, None, 1.0, outputs
            ),
        }
        times: dict[str, list[float]] = {"tiles": [], "whole": []}
        count = max(5, repeats * 300_000 // (positions * vocab))
        for _ in range(3):
            for name, head in heads.items():
                start = time.perf_counter()
                for _ in range(count):
                    h = hidden.clone().requires_grad_()
                    (-head(h, weight, targets)[0].sum()).backward()
                times[name].append((time.perf_counter() - start) / count * 1e3)
        best = {k: min(v) for k, v in times.items()}
        rows.append(
            {
                "positions": positions,
                "hidden": hidden_size,
                "vocab": vocab,
                "tiles_ms": round(best["tiles"], 3),
                "whole_ms": round(best["whole"], 3),
                "ratio": round(best["whole"] / best["tiles"], 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--part", choices=["sft", "dpo", "both"], default="both")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    parts = ["sft", "dpo"] if args.part == "both" else [args.part]

    import torch

    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "steps": args.steps,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with contextlib.redirect_stdout(sys.stderr):
            model = peer.build_model(work)
            from transformers import AutoTokenizer

            eos = AutoTokenizer.from_pretrained(model).eos_token
            files = peer.write_data(work, 1000, eos)
        for part in parts:
            prepared = prepare(part, model, files)
            for repeat in range(args.repeats):
                names = list(CONFIGS)
                order = names[repeat % 3 :] + names[: repeat % 3]
                runs = {n: train_once(part, n, prepared, args.steps, work / n) for n in order}
                same = all(r["losses"] == runs["tiles"]["losses"] for r in runs.values())
                row = {
                    "part": part,
                    "repeat": repeat,
                    **{f"{n}_s": round(runs[n]["train_s"], 3) for n in names},
                    **{
                        f"{n}_ratio": round(runs[n]["train_s"] / runs["tiles"]["train_s"], 3)
                        for n in names[1:]
                    },
                    "same_losses": same,
                    "final_loss": runs["tiles"]["losses"][-1],
                }
                result["runs"].append(row)
                print(json.dumps(row), flush=True)
                if not same:
                    print(f"WARNING: {part} losses differ", file=sys.stderr)
        for part in parts:
            for name in list(CONFIGS)[1:]:
                ratios = [r[f"{name}_ratio"] for r in result["runs"] if r["part"] == part]
                print(
                    f"{part}: steps {name} / tiles, median of {len(ratios)}: "
                    f"{statistics.median(ratios):.3f}"
                )
        # labelled positions per batch: the SFT batches' (about 32 answer tokens of 8 rows), the
        # DPO pairs' (about 67), every position of 8 rows of 256 (pretraining); then an 8k and
        # a 32k vocabulary
        result["head_alone"] = head_alone(
            [(32, 64, 749), (67, 64, 749), (2048, 64, 749), (1024, 256, 8000), (256, 576, 32000)]
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"lm_head-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {path}")


if __name__ == "__main__":
    main()
