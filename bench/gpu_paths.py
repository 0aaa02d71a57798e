"""The GPU paths of the training code, measured on a machine with a CUDA GPU:

    python bench/gpu_paths.py [--steps 40] [--out results/gpu_paths.json]

One script, one process, one model (a randomly initialised Llama-style causal LM of about 110M
parameters with the tiny model's tokenizer; no hub needed), SFT with trl's `SFTTrainer` on the
example alpaca data, through tuneline's own pieces: `loop_args` (mixed precision by GPU
capability, gradient checkpointing), `load_kwargs` (4-bit NF4 for QLoRA through bitsandbytes)
and `apply_weights` (LoRA). Each configuration reports optimiser steps per second, tokens per
second, the final loss and peak GPU memory, and the ratios against the fp32 LoRA baseline run in
the same process.

This script imports no Prefect or MLflow, so it runs on a GPU machine with only the training
stack installed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS = {
    "lora-fp32": ({"weights": "lora"}, {"mixed_precision": "no"}),
    "lora-bf16": ({"weights": "lora"}, {"mixed_precision": "auto"}),
    "lora-bf16-checkpointing": (
        {"weights": "lora"},
        {"mixed_precision": "auto", "gradient_checkpointing": True},
    ),
    "qlora-4bit-bf16": ({"weights": "lora", "load_in_4bit": True}, {"mixed_precision": "auto"}),
    "full-bf16": ({"weights": "full"}, {"mixed_precision": "auto"}),
}


def rows() -> list[dict[str, str]]:
    from tasks.models.prompts import alpaca_prompt
    from tasks.training.causal.sft import ALPACA_TEMPLATE

    data = ROOT / "deployments" / "data" / "assistant" / "train.alpaca.jsonl"
    out = []
    for line in data.read_text().splitlines():
        row = json.loads(line)
        prompt = alpaca_prompt(ALPACA_TEMPLATE, row["instruction"], row["input"])
        out.append({"prompt": prompt, "completion": row["output"]})
    return out


def build_model(folder: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tasks.models.tiny import build_tiny_causal_lm, default_corpus

    tiny = build_tiny_causal_lm(folder / "tiny", default_corpus())
    tokenizer = AutoTokenizer.from_pretrained(str(tiny))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=12,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    target = folder / "small"
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    return target


def run(name: str, path: Path, steps: int, data: list[dict[str, str]], work: Path) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tasks.training.base import PeakMemory, TrainSpec, loop_args
    from tasks.training.causal.config import apply_weights, load_kwargs
    from tasks.training.causal.sft import SftMethod

    method_kwargs, train_kwargs = CONFIGS[name]
    method = SftMethod(**method_kwargs)
    spec = TrainSpec(
        max_steps=steps,
        batch_size=32,
        learning_rate=2e-4,
        eval_loss_points=0,
        logging_steps=10,
        **train_kwargs,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    kwargs = load_kwargs(method)
    if not kwargs:
        kwargs = {"device_map": {"": 0}}
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    model = apply_weights(model, method, "CAUSAL_LM")
    if spec.gradient_checkpointing and method.weights == "lora":
        model.enable_input_require_grads()
    args = SFTConfig(
        **loop_args(spec, str(work / name), False, steps, False),
        max_length=256,
        packing=False,
        completion_only_loss=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(data),
        processing_class=tokenizer,
    )
    torch.cuda.synchronize()
    with PeakMemory() as memory:
        started = time.perf_counter()
        output = trainer.train()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    tokens = max((float(h.get("num_tokens", 0)) for h in trainer.state.log_history), default=0.0)
    figures = {
        "steps": int(output.global_step),
        "seconds": round(seconds, 2),
        "steps_per_second": round(output.global_step / seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1) if tokens else None,
        "final_loss": round(float(output.training_loss), 4),
        "loss_finite": math.isfinite(float(output.training_loss)),
        "peak_gpu_mb": round(memory.peak_gpu_mb, 1),
        "bf16": bool(args.bf16),
        "fp16": bool(args.fp16),
        "loaded_in_4bit": bool(getattr(model, "is_loaded_in_4bit", False))
        or any("4bit" in type(m).__name__ for m in model.modules()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    del trainer, model
    torch.cuda.empty_cache()
    return figures


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    options = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: this benchmark measures the GPU paths")
    data = rows()
    results: dict[str, dict] = {
        "device": {
            "name": torch.cuda.get_device_name(0),
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "torch": torch.__version__,
        }
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = build_model(Path(tmp))
        run("lora-fp32", path, 5, data, Path(tmp))  # warm-up: CUDA context, kernels, allocator
        for name in options.configs.split(","):
            try:
                results[name] = run(name, path, options.steps, data, Path(tmp))
            except Exception as exc:  # report and go on: one broken path must not hide the others
                results[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            print(name, json.dumps(results[name]), flush=True)
    base = results.get("lora-fp32", {})
    for name, figures in results.items():
        if name != "device" and "error" not in figures and base.get("steps_per_second"):
            figures["speed_vs_lora_fp32"] = round(
                figures["steps_per_second"] / base["steps_per_second"], 2
            )
            figures["memory_vs_lora_fp32"] = round(figures["peak_gpu_mb"] / base["peak_gpu_mb"], 2)
    text = json.dumps(results, indent=2)
    print(text)
    if options.out:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.write_text(text)


if __name__ == "__main__":
    main()
