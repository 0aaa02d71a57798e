"""The causal-LM training loop every causal method shares: load the base (4-bit when asked and
able), apply the method's weights choice, run the trl trainer its module builds (`SPEC.trainer`),
and save the artifact (an adapter linked to its base, or full weights). Checkpoints and resume
work as for the encoders (`tasks.training.checkpoints`)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tasks.models import artifacts
from tasks.models import base as models
from tasks.models.base import BaseModelSpec
from tasks.tokenization.encoding import TokenizedRef, load_split
from tasks.training import METHODS, checkpoints
from tasks.training.base import (
    BuildContext,
    FitStats,
    LoadWindow,
    PeakMemory,
    TrainResult,
    TrainSpec,
    count_parameters,
    is_main_process,
    loop_args,
    threads_for_the_load,
    total_steps,
)
from tasks.training.causal.config import CausalMethod, TrainerInputs, load_kwargs
from tasks.training.causal.lm_head import eager_lm_head
from tasks.training.causal.padding import right_padding_unmasked

log = logging.getLogger(__name__)


class TokenCounter:
    """Wraps a trainer's collator to count real and padded tokens of training batches."""

    def __init__(self, collator: Any, model: Any) -> None:
        self.collator = collator
        self.model = model
        self.real_tokens = 0
        self.total_tokens = 0

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        batch = self.collator(features)
        if self.model.training and isinstance(batch, dict):
            masks = [v for k, v in batch.items() if k.endswith("attention_mask")]
            if masks:
                self.real_tokens += sum(int(m.sum()) for m in masks)
                self.total_tokens += sum(int(m.numel()) for m in masks)
            elif "input_ids" in batch:  # padding-free: one packed row, no padding
                self.real_tokens += int(batch["input_ids"].numel())
                self.total_tokens += int(batch["input_ids"].numel())
        return batch

    @property
    def padding_share(self) -> float:
        return 1.0 - self.real_tokens / self.total_tokens if self.total_tokens else 0.0


def load_tokenizer(base: BaseModelSpec) -> Any:
    """The base tokenizer with a pad token (EOS when the model has none)."""
    tokenizer = models.load_tokenizer(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(base: BaseModelSpec, method: CausalMethod, tokenizer: Any, seed: int) -> Any:
    """The base model in the form the objective trains: a language model, or for a reward model
    the same network with a one-output scoring head (seeded)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, set_seed

    set_seed(seed)
    if METHODS[method.name].objective == "score":
        model = models.load_pretrained(
            AutoModelForSequenceClassification, base, num_labels=1, **load_kwargs(method)
        )
    else:
        model = models.load_pretrained(AutoModelForCausalLM, base, **load_kwargs(method))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def prepare_model(
    base: BaseModelSpec,
    method: CausalMethod,
    tokenizer: Any,
    seed: int,
    steps: int,
    init: str | None = None,
) -> Any:
    """The base model with the method's weights choice applied; with `init` (a trained artifact
    of the same method), that model's weights instead of the base's."""
    if init is not None:
        return causal_from(init, base, method, tokenizer, seed)
    ctx = BuildContext(total_steps=steps, num_labels=1)
    return METHODS[method.name].build(load_base(base, method, tokenizer, seed), method, ctx)


def _eval_rows(tokenized: TokenizedRef, spec: TrainSpec, total: int) -> Any:
    if not spec.eval_loss_points or total < 2:
        return None
    held = load_split(tokenized, "eval")
    return held.select(range(min(len(held), spec.eval_loss_rows))) if len(held) else None


def make_trainer(
    model: Any,
    tokenizer: Any,
    method: Any,
    spec: TrainSpec,
    tokenized: TokenizedRef,
    output_dir: str,
    saving: bool,
    max_length: int,
    callbacks: list[Any],
    base: BaseModelSpec,
) -> Any:
    """The trl trainer the method builds (its module's `trainer`), configured from the recipe."""
    entry = METHODS[method.name]
    assert entry.trainer is not None, f"{method.name} is not a causal-LM method"
    train = load_split(tokenized, "train")
    total = total_steps(len(train), spec)
    held = _eval_rows(tokenized, spec, total) if entry.objective != "rl" else None
    inputs = TrainerInputs(
        model=model,
        tokenizer=tokenizer,
        method=method,
        spec=spec,
        train=train,
        held=held,
        shared=loop_args(spec, output_dir, saving, total, held is not None),
        max_length=max_length,
        callbacks=callbacks,
        load_reference=lambda: load_base(base, method, tokenizer, spec.seed),
    )
    return entry.trainer(inputs)


def fit(
    model: Any,
    tokenizer: Any,
    tokenized: TokenizedRef,
    method: Any,
    spec: TrainSpec,
    work: Path,
    max_length: int,
    base: BaseModelSpec,
    checkpoint_dir: Path | None = None,
    load: LoadWindow | None = None,
) -> FitStats:
    """Build the method's trainer and train. With `load` (the machine's load, measured since the
    model began loading), PyTorch trains with one thread per core that load leaves free: the
    measurement ends once the trainer is built, instead of in a wait before it."""
    from transformers.trainer_callback import PrinterCallback

    from tasks.training.warmup import StepTimer

    saving = bool(spec.save_steps and checkpoint_dir is not None)
    resume = checkpoints.latest_complete(checkpoint_dir) if saving and checkpoint_dir else None
    resumed_from = checkpoints.marker_step(resume) if resume else 0
    callbacks = checkpoints.callbacks(model, resume) if saving else []
    output_dir = str(checkpoint_dir if saving else work / "trainer")
    building = time.perf_counter()
    trainer = make_trainer(
        model, tokenizer, method, spec, tokenized, output_dir, saving, max_length, callbacks, base
    )
    built = time.perf_counter() - building
    trainer.remove_callback(PrinterCallback)  # figures go to MLflow, not stdout
    counter = TokenCounter(trainer.data_collator, trainer.model)
    trainer.data_collator = counter
    timer = StepTimer(lambda: counter.real_tokens)
    trainer.add_callback(timer)
    started = time.perf_counter()
    with (
        threads_for_the_load(load) if load is not None else contextlib.nullcontext(0) as threads,
        eager_lm_head(),
        right_padding_unmasked(trainer.model, getattr(trainer, "ref_model", None)),
    ):
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    elapsed = time.perf_counter() - started
    stats = FitStats.of_trainer(
        output,
        trainer.state.log_history,
        elapsed,
        (counter.real_tokens, counter.padding_share),
        resumed_from,
        timer.figures(),
        curves=("loss", "eval_loss", "reward"),
    )
    return replace(stats, build_seconds=built, torch_threads=threads or None)


def prompt_style(data_format: str) -> str:
    return {"alpaca": "alpaca", "chat": "chat"}.get(data_format, "raw")


def train_causal(
    tokenized: TokenizedRef,
    base: BaseModelSpec,
    method: Any,
    spec: TrainSpec,
    data_format: str,
    max_length: int,
    out_dir: Path,
    checkpoint_dir: Path | None = None,
    init: str | None = None,
) -> TrainResult:
    """Build the method on the base model (or on the trained artifact `init`), train it and save
    the artifact under `out_dir`."""
    load = LoadWindow()  # the machine's load, measured while the model loads
    entry = METHODS[method.name]
    tokenizer = load_tokenizer(base)
    steps = total_steps(int(tokenized.stats.get("count", 0)), spec)
    model = prepare_model(base, method, tokenizer, spec.seed, steps, init)
    if spec.gradient_checkpointing and method.weights == "lora":
        model.enable_input_require_grads()  # activations must carry grads into the adapter
    trainable, total = count_parameters(model)
    with PeakMemory() as memory:
        stats = fit(
            model,
            tokenizer,
            tokenized,
            method,
            spec,
            out_dir,
            max_length,
            base,
            checkpoint_dir,
            load,
        )
    kind = "adapter" if method.weights == "lora" else "weights"
    manifest = {
        "task": "causal-lm",
        "kind": kind,
        "objective": entry.objective,
        "method": method.model_dump(),
        "max_length": max_length,
        "prompt_style": prompt_style(data_format),
        "prompt_template": getattr(method, "prompt_template", None),
        "labels": [],
        "base": {**models.reference(base), "trust_remote_code": base.trust_remote_code},
    }
    target = out_dir / "artifact"
    if kind == "weights" and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if is_main_process():  # under `accelerate launch`, rank 0 alone writes
        artifacts.save_artifact(model, tokenizer, target, manifest, base, stats.history)
        shutil.rmtree(out_dir / "trainer", ignore_errors=True)
        if checkpoint_dir is not None:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
    quantized = float(bool(getattr(model, "is_loaded_in_4bit", False)))
    params = (trainable, total)
    return TrainResult.of(
        str(target),
        method.name,
        kind,
        params,
        stats,
        memory,
        quantized_4bit=quantized,
        torch_threads=float(stats.torch_threads or 0),
    )


def causal_from(artifact: str, base: BaseModelSpec, method: Any, tokenizer: Any, seed: int) -> Any:
    """A causal LM to train, holding the artifact's weights: its LoRA adapter made trainable on
    the base (4-bit when the recipe asks and the machine can), or its full weights."""
    root = Path(artifact)
    if artifacts.read_manifest(root)["kind"] == "adapter":
        from peft import PeftModel, prepare_model_for_kbit_training

        model = load_base(base, method, tokenizer, seed)
        if getattr(model, "is_loaded_in_4bit", False):
            model = prepare_model_for_kbit_training(model)
        return PeftModel.from_pretrained(model, str(root / "model"), is_trainable=True)
    from transformers import AutoModelForCausalLM, set_seed

    set_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(root / "model"), use_safetensors=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model
