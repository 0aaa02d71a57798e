"""The sequence-classification training loop shared by the encoder methods (transformers Trainer,
dynamic padding, length-grouped batches), and the `train_model` task."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from tasks.models import artifacts
from tasks.models import base as models
from tasks.models.base import BaseModelSpec
from tasks.tokenization.encoding import TokenizedRef, load_split
from tasks.training import METHODS
from tasks.training.base import (
    BuildContext,
    FitStats,
    LoadWindow,
    MethodConfig,
    PeakMemory,
    TrainResult,
    TrainSpec,
    count_parameters,
    is_main_process,
    loop_args,
    threads_for_the_load,
    total_steps,
)

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")


class PaddingCounter:
    """A dynamic-padding collator that also counts real and padded tokens of training batches
    (not of the held-out loss evaluations that run in between)."""

    def __init__(self, tokenizer: Any, model: Any) -> None:
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer)
        self.model = model
        self.real_tokens = 0
        self.total_tokens = 0

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        kept = [{k: v for k, v in f.items() if k in MODEL_INPUTS} for f in features]
        batch = self.pad(kept)
        if self.model.training:
            mask = batch["attention_mask"]
            self.real_tokens += int(mask.sum())
            self.total_tokens += int(mask.numel())
        return batch

    @property
    def padding_share(self) -> float:
        return 1.0 - self.real_tokens / self.total_tokens if self.total_tokens else 0.0


def labelled(split: Any) -> Any:
    """Rows whose label is in the label set (selected by index: no hashed lambda for datasets)."""
    import numpy as np

    keep = np.flatnonzero(np.asarray(split["labels"]) >= 0)
    return split if len(keep) == len(split) else split.select(keep)


def load_base_classifier(base: BaseModelSpec, labels: list[str], seed: int) -> Any:
    """The base encoder with a freshly initialised (seeded) classification head."""
    from transformers import AutoModelForSequenceClassification, set_seed

    set_seed(seed)
    return models.load_pretrained(
        AutoModelForSequenceClassification, base, **artifacts.label_kwargs(labels)
    )


def prepare_model(
    base: BaseModelSpec,
    method: MethodConfig,
    labels: list[str],
    seed: int,
    steps: int = 100,
    init: str | None = None,
) -> Any:
    """The base encoder with `method` applied, ready to train; with `init` (a trained artifact of
    the same method), that model's weights instead of the base's."""
    ctx = BuildContext(total_steps=steps, num_labels=len(labels))
    if init is not None:
        return classifier_from(init, base, method, labels, seed, ctx)
    if METHODS[method.name].artifact == "probe":
        from transformers import AutoModel, set_seed

        set_seed(seed)
        return METHODS[method.name].build(models.load_pretrained(AutoModel, base), method, ctx)
    model = load_base_classifier(base, labels, seed)
    return METHODS[method.name].build(model, method, ctx)


def fit(
    model: Any,
    tokenizer: Any,
    tokenized: TokenizedRef,
    spec: TrainSpec,
    work: Path,
    callbacks: list[Any] | None = None,
    checkpoint_dir: Path | None = None,
) -> FitStats:
    """Train `model` in place on the tokenized train split. With `spec.save_steps` and a
    `checkpoint_dir`, checkpoints are written there and a re-run resumes from the newest one."""
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from tasks.training import checkpoints
    from tasks.training.warmup import StepTimer

    saving = bool(spec.save_steps and checkpoint_dir is not None)
    resume = checkpoints.latest_complete(checkpoint_dir) if saving and checkpoint_dir else None
    resumed_from = checkpoints.marker_step(resume) if resume else 0  # rotated away later
    if saving:
        callbacks = [*(callbacks or []), *checkpoints.callbacks(model, resume)]

    train = labelled(load_split(tokenized, "train"))
    collator = PaddingCounter(tokenizer, model)
    # A held-out loss curve: a few evaluations on at most `eval_loss_rows` eval rows.
    eval_curve = None
    total = total_steps(len(train), spec)
    if spec.eval_loss_points and total >= 2:
        held = labelled(load_split(tokenized, "eval"))
        if len(held):
            eval_curve = held.select(range(min(len(held), spec.eval_loss_rows)))
    args = TrainingArguments(
        **loop_args(
            spec,
            str(checkpoint_dir if saving else work / "trainer"),
            saving,
            total,
            eval_curve is not None,
        ),
        train_sampling_strategy="group_by_length" if spec.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=eval_curve,
        data_collator=collator,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # figures go to MLflow, not stdout
    timer = StepTimer(lambda: collator.real_tokens)
    trainer.add_callback(timer)
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    elapsed = time.perf_counter() - started
    return FitStats.of_trainer(
        output,
        trainer.state.log_history,
        elapsed,
        (collator.real_tokens, collator.padding_share),
        resumed_from,
        timer.figures(),
    )


def fit_custom(
    model: Any, tokenizer: Any, tokenized: TokenizedRef, method: MethodConfig, max_length: int
) -> FitStats:
    """Methods that do not train by gradient steps (the probe) bring their own fit."""
    import numpy as np

    train = labelled(load_split(tokenized, "train"))
    fit_fn = METHODS[method.name].fit
    assert fit_fn is not None
    stats = fit_fn(
        model, tokenizer, method, list(train["text"]), np.asarray(train["labels"]), max_length
    )
    tokens = int(sum(train["length"]))
    stats.tokens_per_second = tokens / stats.seconds if stats.seconds else 0.0
    return stats


def fit_method(
    model: Any,
    tokenizer: Any,
    tokenized: TokenizedRef,
    method: MethodConfig,
    spec: TrainSpec,
    work: Path,
    max_length: int,
    checkpoint_dir: Path | None = None,
) -> FitStats:
    """Train `model` the way its method trains: gradient steps, or the method's own fit."""
    entry = METHODS[method.name]
    if entry.fit is not None:
        return fit_custom(model, tokenizer, tokenized, method, max_length)
    callbacks = entry.callbacks(model) if entry.callbacks else None
    return fit(model, tokenizer, tokenized, spec, work, callbacks, checkpoint_dir)


def train_classifier(
    tokenized: TokenizedRef,
    base: BaseModelSpec,
    method: MethodConfig,
    spec: TrainSpec,
    labels: list[str],
    max_length: int,
    out_dir: Path,
    checkpoint_dir: Path | None = None,
    init: str | None = None,
) -> TrainResult:
    """Build the method on the base encoder (or on the trained artifact `init`), train it and
    save the artifact under `out_dir`. Checkpoints (when `train.save_steps` is set) go to
    `checkpoint_dir` and are removed once the artifact is complete."""
    load = LoadWindow()  # the machine's load, measured while the model loads
    tokenizer = models.load_tokenizer(base)
    entry = METHODS[method.name]
    steps = total_steps(int(tokenized.stats.get("count", 0)), spec)
    model = prepare_model(base, method, labels, spec.seed, steps, init)
    trainable, total = count_parameters(model)
    with threads_for_the_load(load) as threads, PeakMemory() as memory:
        stats = fit_method(
            model, tokenizer, tokenized, method, spec, out_dir, max_length, checkpoint_dir
        )
    kind = entry.artifact
    manifest = {
        "task": "classification",
        "kind": kind,
        "method": method.model_dump(),
        "labels": labels,
        "max_length": max_length,
        "base": {**models.reference(base), "trust_remote_code": base.trust_remote_code},
    }
    target = out_dir / "artifact"
    if is_main_process():  # under `accelerate launch`, rank 0 alone writes
        artifacts.save_artifact(model, tokenizer, target, manifest, base, stats.history)
        shutil.rmtree(out_dir / "trainer", ignore_errors=True)
        if checkpoint_dir is not None:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
    params = (trainable, total)
    return TrainResult.of(
        str(target), method.name, kind, params, stats, memory, torch_threads=float(threads)
    )


def classifier_from(
    artifact: str, base: BaseModelSpec, method: Any, labels: list[str], seed: int, ctx: BuildContext
) -> Any:
    """A classifier to train, holding the artifact's weights: the adapter (with its classifier
    head) made trainable on the base encoder, or the full weights with the method's freezing."""
    from transformers import AutoModelForSequenceClassification

    root = Path(artifact)
    if artifacts.read_manifest(root)["kind"] == "adapter":
        from peft import PeftModel

        model = load_base_classifier(base, labels, seed)
        return PeftModel.from_pretrained(model, str(root / "model"), is_trainable=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(root / "model"), use_safetensors=True
    )
    return METHODS[method.name].build(model, method, ctx)
