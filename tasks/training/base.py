"""What every training method shares: the method config base, the registry entry shape, the
training settings block and the result a training task returns."""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.core.promotion import DEFAULT_METRIC
from tasks.core.settings import DEFAULT_SEED

# `train.init_from`: the base model, this model's champion, or one registered version.
INIT_FROM = re.compile(r"base|champion|models:/[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[1-9][0-9]*")
ArtifactKind = Literal["adapter", "weights", "probe"]
# What the trained model does: classify (encoders), or for causal LMs model language (pretrain,
# sft), prefer (dpo, kto), score (reward) or act against a reward (rlhf).
Objective = Literal["classify", "lm", "preference", "score", "rl"]


class MethodConfig(BaseModel):
    """Base of every method's config; `name` is the discriminator."""

    model_config = ConfigDict(extra="forbid")

    name: str


@dataclass(frozen=True)
class BuildContext:
    """What a builder may need to know about the run it builds for."""

    total_steps: int
    num_labels: int


@dataclass(frozen=True)
class MethodSpec:
    """One registry entry: the config model, the builder and the form the result registers in.

    `callbacks` returns Trainer callbacks a method needs (AdaLoRA's rank allocation); `fit`
    replaces the gradient loop for methods that train otherwise (the logistic-regression probe);
    `trainer` builds a causal-LM method's trl trainer (the shared loop in `causal` calls it).
    """

    config: type[MethodConfig]
    build: Callable[[Any, Any, BuildContext], Any]  # (model, config, ctx) -> model to train
    artifact: ArtifactKind
    tasks: tuple[str, ...] = ("classification",)
    formats: tuple[str, ...] = ("classification",)  # data formats the method trains on
    objective: Objective = "classify"
    default_metric: str = DEFAULT_METRIC  # the gate's metric when the recipe names none
    callbacks: Callable[[Any], list[Any]] | None = None
    fit: Callable[..., FitStats] | None = None  # a method that does not train by steps (probe)
    # causal-LM methods: the trl trainer the method trains with, from `causal_config.TrainerInputs`
    trainer: Callable[[Any], Any] | None = None
    # whether a run may start from a version trained with this method (`train.init_from`): its
    # artifact holds all it learnt, and training it further means the same thing
    continuable: bool = False
    # The learning rate `tuneline compare` uses when the recipe names another method: adapters
    # and heads want ~1e-3, whole-network updates ~5e-5.
    default_learning_rate: float = 1e-3


class DistributedSpec(BaseModel):
    """Training across processes with `accelerate launch` (torchrun underneath): DDP over gloo on
    CPU or NCCL on GPUs, FSDP or DeepSpeed. `train.batch_size` stays the global batch, so the
    number of optimiser steps does not change with the number of processes."""

    model_config = ConfigDict(extra="forbid")

    processes: int = Field(
        default=1, ge=1, le=1024, description="Processes on this machine (GPUs, or CPU workers)."
    )
    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field(
        default="ddp", description="How the model is spread over the processes."
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="The strategy's own `TrainingArguments` fields, passed through: e.g. "
        "`{fsdp: full_shard auto_wrap, fsdp_config: {...}}`, `{deepspeed: {...config...}}`, "
        "`{ddp_find_unused_parameters: false}`.",
    )


class TrainSpec(BaseModel):
    """Optimiser and loop settings, named as in `transformers.TrainingArguments`."""

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(default=3.0, gt=0, description="Passes over the training data.")
    max_steps: int = Field(
        default=-1, description="Cap on optimiser steps; -1 means run all `epochs`."
    )
    learning_rate: float = Field(default=5e-4, gt=0, description="Peak learning rate.")
    batch_size: int = Field(default=16, ge=1, le=4096, description="Examples per optimiser step.")
    eval_batch_size: int = Field(default=64, ge=1, le=4096, description="Examples per eval batch.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(default=0.06, ge=0, lt=1, description="Share of steps warming up.")
    seed: int = Field(
        default=DEFAULT_SEED, description="Seed for initialisation, shuffling and splits."
    )
    group_by_length: bool = Field(
        default=True, description="Batch examples of similar length together (less padding)."
    )
    logging_steps: int = Field(default=5, ge=1, description="Log the training loss every N steps.")
    save_steps: int = Field(
        default=0,
        ge=0,
        description="Checkpoint every N optimiser steps (0: none). A re-run of the same recipe, "
        "data and code resumes from the newest complete checkpoint.",
    )
    save_total_limit: int = Field(default=2, ge=1, description="Checkpoints kept on disk.")
    eval_loss_points: int = Field(
        default=5, ge=0, description="Held-out loss evaluations during training (0: none)."
    )
    eval_loss_rows: int = Field(
        default=256, ge=1, description="Eval rows used for the held-out loss curve."
    )
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, description="Batches accumulated per optimiser step."
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        default="auto",
        description="On a GPU: `auto` picks bf16 where the GPU supports it, else fp16. Ignored "
        "on CPU.",
    )
    gradient_checkpointing: bool = Field(
        default=False, description="Recompute activations in the backward pass (less memory)."
    )
    distributed: DistributedSpec = Field(
        default_factory=DistributedSpec, description="Training across several processes."
    )
    init_from: str = Field(
        default="base",
        description="Weights the run starts from: `base` (the base model), `champion` (the "
        "current champion of this recipe's model, same base model and method: continual "
        "retraining; the base model while there is none) or `models:/NAME/VERSION` (a "
        "registered version).",
    )

    @field_validator("init_from")
    @classmethod
    def _init_from_form(cls, value: str) -> str:
        if not INIT_FROM.fullmatch(value):
            raise ValueError(
                f"init_from '{value}': expected base, champion or models:/NAME/VERSION "
                "(e.g. models:/sentiment/3)"
            )
        return value

    @model_validator(mode="after")
    def _batch_splits(self) -> TrainSpec:
        if self.batch_size % self.distributed.processes:
            raise ValueError(
                f"batch_size {self.batch_size} must divide evenly over "
                f"{self.distributed.processes} processes"
            )
        return self


@dataclass(frozen=True)
class TrainResult:
    """A trained artifact on disk and what it took to make it."""

    path: str
    method: str
    artifact: str
    trainable_params: int
    total_params: int
    train_loss: float
    steps: int
    train_seconds: float
    train_samples_per_second: float
    padding_share: float
    tokens_per_second: float
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def trainable_share(self) -> float:
        return self.trainable_params / self.total_params if self.total_params else 0.0

    @classmethod
    def of(
        cls,
        path: str,
        method: str,
        artifact: str,
        params: tuple[int, int],
        stats: FitStats,
        memory: PeakMemory,
        **extra: float,
    ) -> TrainResult:
        """The result of a fit (`stats`) saved at `path`: one shape for every method."""
        trainable, total = params
        return cls(
            path=path,
            method=method,
            artifact=artifact,
            trainable_params=trainable,
            total_params=total,
            train_loss=stats.train_loss,
            steps=stats.steps,
            train_seconds=stats.seconds,
            train_samples_per_second=stats.samples_per_second,
            padding_share=stats.padding_share,
            tokens_per_second=stats.tokens_per_second,
            extra={
                "peak_rss_mb": memory.peak_rss_mb,
                "peak_gpu_mb": memory.peak_gpu_mb,
                "resumed_from_step": float(stats.resumed_from),
                **({"train_loop_seconds": stats.loop_seconds} if stats.loop_seconds else {}),
                **({"trainer_build_seconds": stats.build_seconds} if stats.build_seconds else {}),
                **extra,
                **stats.warmup,
            },
        )


def threads_for(cores: int, others_busy: float, current: int) -> int:
    """Intra-op threads to train with: one per core that other work leaves free (at least one,
    at most what PyTorch would use)."""
    return max(1, min(current, round(cores - others_busy)))


class LoadWindow:
    """How busy the machine's other work keeps its cores, measured from this object's creation
    to `others_busy()` (at least `shortest` seconds: it sleeps for the rest). Created when
    training starts to load its model and read once the trainer is built, it measures over that
    work instead of over a wait.

    Niced work does not count: it yields its core to training. (tuneline's own work done ahead
    is stopped before training starts: `tasks.core.ahead.end_work_ahead`.)"""

    def __init__(self, shortest: float = 0.25) -> None:
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self._began = (time.monotonic(), psutil.cpu_times(), self._me.cpu_times())
        self._until = self._began[0] + shortest

    def others_busy(self) -> float:
        """Cores busy with work other than this process's and niced work, on average over the
        window."""
        time.sleep(max(0.0, self._until - time.monotonic()))
        wall = time.monotonic() - self._began[0]
        machine = self._psutil.cpu_times()
        me = self._me.cpu_times()
        delta = {k: getattr(machine, k) - getattr(self._began[1], k) for k in machine._fields}
        mine = (me.user + me.system - self._began[2].user - self._began[2].system) / wall
        return max(0.0, busy_cores(delta, self._psutil.cpu_count() or 1) - mine)


def busy_cores(delta: dict[str, float], cores: int) -> float:
    """Cores kept busy over a window, from the machine's CPU-time counters' growth over it
    (`psutil.cpu_times` fields): idle, waiting on I/O and niced time count as free."""
    total = sum(delta.values()) - delta.get("guest", 0.0) - delta.get("guest_nice", 0.0)
    spare = delta["idle"] + delta.get("iowait", 0.0) + delta.get("nice", 0.0)
    return (total - spare) / total * cores if total > 0 else 0.0


@contextmanager
def threads_for_the_load(window: LoadWindow | None = None) -> Iterator[int]:
    """While it lasts, PyTorch trains with one thread per core the machine's other work leaves
    free, measured over `window` (a quarter second from now without one).

    PyTorch's OpenMP threads spin while they wait for each other. When other jobs hold the cores,
    a spinning thread takes the time slice its preempted partner needs, and a step takes several
    times longer than with fewer threads (bench/threads.py: 0.54 s a step with 2 threads beside
    4 busy loops on 2 cores, 0.19 s with 1). A user's `OMP_NUM_THREADS` stands."""
    import torch

    current = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS"):
        yield current
        return
    others = (window or LoadWindow()).others_busy()
    threads = threads_for(len(os.sched_getaffinity(0)), others, current)
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(current)


class PeakMemory:
    """Peak memory while a block runs: process RSS above the start (sampled), and the CUDA
    allocator's peak when a GPU is in use. `PeakMemory.active` is the block running now (one
    training per process), for the warm-up timer to read the peak so far."""

    active: PeakMemory | None = None

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_rss_mb = 0.0
        self.peak_gpu_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        import psutil
        import torch

        self._proc = psutil.Process()
        self._start = self._proc.memory_info().rss
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        PeakMemory.active = self
        return self

    def current_gpu_peak_mb(self) -> float:
        import torch

        return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = self._proc.memory_info().rss - self._start
            self.peak_rss_mb = max(self.peak_rss_mb, rss / 2**20)
            self._stop.wait(self.interval)

    def __exit__(self, *exc: object) -> None:
        import torch

        self._stop.set()
        self._thread.join()
        PeakMemory.active = None
        if torch.cuda.is_available():
            self.peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20


def device_name() -> str:
    """Where training runs in this process: the GPU's name, or `cpu`."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def precision_args(choice: str) -> dict[str, bool]:
    """`TrainingArguments` precision flags: mixed precision on a GPU only."""
    import torch

    # Both flags always set: trl's configs default bf16 to True, which on CPU trains under
    # bf16 autocast and leaves a model whose outputs differ from its saved weights.
    flags = {"bf16": False, "fp16": False}
    if choice == "no" or not torch.cuda.is_available():
        return flags
    if choice == "auto":
        choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {**flags, choice: True}


def loop_args(
    spec: TrainSpec, output_dir: str, saving: bool, total: int, with_eval: bool
) -> dict[str, Any]:
    """The `TrainingArguments` every method's trainer shares, from the recipe's train block."""
    import torch

    return {
        "output_dir": output_dir,
        "num_train_epochs": spec.epochs,
        "max_steps": spec.max_steps,
        "per_device_train_batch_size": spec.batch_size // spec.distributed.processes,
        "gradient_accumulation_steps": spec.gradient_accumulation_steps,
        "learning_rate": spec.learning_rate,
        "weight_decay": spec.weight_decay,
        "warmup_steps": spec.warmup_ratio,  # a float below 1 is a share of the steps
        "logging_steps": spec.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps" if saving else "no",
        "save_steps": spec.save_steps or 500,
        "save_total_limit": spec.save_total_limit,
        "eval_strategy": "steps" if with_eval else "no",
        "eval_steps": max(1, total // max(spec.eval_loss_points, 1)),
        "per_device_eval_batch_size": spec.eval_batch_size,
        "report_to": "none",
        "seed": spec.seed,
        "data_seed": spec.seed,
        "disable_tqdm": True,
        "use_cpu": not torch.cuda.is_available(),
        "dataloader_num_workers": 0,
        **checkpointing_args(spec.gradient_checkpointing),
        **precision_args(spec.mixed_precision),
        **distributed_args(spec.distributed),
    }


def checkpointing_args(on: bool) -> dict[str, bool]:
    """Activation checkpointing exactly as the recipe says, named both ways: trl's configs
    default the older name to True, which would otherwise switch it on for every trl method
    (recomputing each layer's forward pass in the backward pass: about a third slower)."""
    name = _checkpointing_field()
    return {name: on, "gradient_checkpointing": on}


def _checkpointing_field() -> str:
    """transformers renamed gradient checkpointing to activation checkpointing during 5.x;
    the older name still works there but warns (drop this once 5.17 is out of use)."""
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    return (
        "activation_checkpointing"
        if "activation_checkpointing" in fields
        else ("gradient_checkpointing")
    )


def distributed_args(spec: DistributedSpec) -> dict[str, Any]:
    """`TrainingArguments` fields for the strategy (only under `accelerate launch`)."""
    import torch

    if spec.processes <= 1:
        return {}
    settings = dict(spec.settings)
    if spec.strategy == "ddp":
        settings.setdefault("ddp_backend", "nccl" if torch.cuda.is_available() else "gloo")
    elif spec.strategy == "fsdp":
        settings.setdefault("fsdp", "full_shard auto_wrap")
    return settings


def is_main_process() -> bool:
    """Rank 0 under `accelerate launch`, or the only process."""
    import os

    return os.environ.get("RANK", "0") == "0"


def total_steps(n_train: int, spec: TrainSpec) -> int:
    """Optimiser steps the run will take (what AdaLoRA's schedule is built for)."""
    if spec.max_steps > 0:
        return spec.max_steps
    return max(1, math.ceil(n_train / spec.batch_size) * math.ceil(spec.epochs))


def count_parameters(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


@dataclass
class FitStats:
    train_loss: float
    steps: int
    seconds: float
    samples_per_second: float
    padding_share: float
    tokens_per_second: float
    history: list[dict[str, float]]
    resumed_from: int = 0
    warmup: dict[str, float] = field(default_factory=dict)  # tasks.training.warmup figures
    # The optimiser steps alone, as transformers' Trainer times them (its `train_runtime`: from
    # the first step to the last, without building the data loader and optimiser before them or
    # the held-out loss points among them): the figure other tools built on it report.
    loop_seconds: float | None = None
    # Building the trainer before `train()` (trl preparing the data, for one)
    build_seconds: float | None = None
    torch_threads: int | None = None  # PyTorch's threads while it trained, when fit chose them

    @classmethod
    def of_trainer(
        cls,
        output: Any,
        logged: list[dict[str, Any]],
        elapsed: float,
        tokens: tuple[int, float],
        resumed_from: int,
        warmup: dict[str, float],
        curves: tuple[str, ...] = ("loss", "eval_loss"),
    ) -> FitStats:
        """A transformers `Trainer.train()` run's figures: `output` and the trainer's log history
        (`logged`), `elapsed` seconds, (real tokens, padding share) from the collator. Throughput
        counts training only: the held-out loss curve's evaluations run inside train()."""
        evaluating = sum(float(h.get("eval_runtime", 0.0)) for h in logged)
        seconds = max(elapsed - evaluating, 1e-9)
        runtime = output.metrics.get("train_runtime")
        real_tokens, padding_share = tokens
        history = [
            {"step": float(h["step"]), curve: float(h[curve])}
            for curve in curves
            for h in logged
            if curve in h
        ]
        return cls(
            train_loss=float(output.training_loss),
            steps=int(output.global_step),
            seconds=seconds,
            samples_per_second=float(output.metrics.get("train_samples_per_second", 0.0))
            * elapsed
            / seconds,
            padding_share=padding_share,
            tokens_per_second=real_tokens / seconds if seconds else 0.0,
            history=history,
            resumed_from=resumed_from,
            warmup=warmup,
            loop_seconds=max(float(runtime) - evaluating, 0.0) if runtime is not None else None,
        )
