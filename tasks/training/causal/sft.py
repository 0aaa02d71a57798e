"""Supervised fine-tuning (trl `SFTTrainer`): prompt-completion pairs, alpaca triplets rendered
through `prompt_template`, or chat messages through the tokenizer's chat template. The loss is
on the completion only by default; sequences are packed (best-fit decreasing, padding-free, each
example attending only to itself) by default."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field

from tasks.training.base import MethodSpec
from tasks.training.causal.config import CausalMethod, TrainerInputs, build_lm, first_row

log = logging.getLogger(__name__)

ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task{input_clause}. Write a response that "
    "appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n{input_block}"
    "### Response:\n"
)


class SftMethod(CausalMethod):
    """Supervised fine-tuning on demonstrations."""

    name: Literal["sft"] = "sft"
    completion_only_loss: bool = Field(
        default=True, description="Train on the completion tokens only (not the prompt)."
    )
    packing: bool | None = Field(
        default=None,
        description="Pack examples into full-length rows without padding, each still attending "
        "only to itself. Default: on where the attention kernel takes packed rows natively "
        "(flash attention on a GPU); off elsewhere, where examples are batched by length "
        "instead (SDPA on CPU attends over the whole packed batch and is slower).",
    )
    prompt_template: str = Field(
        default=ALPACA_TEMPLATE,
        description="How alpaca rows become a prompt: a Python format string with "
        "{instruction}, {input}, {input_clause} (', paired with an input...' when there is "
        "one) and {input_block} ('### Input:\\n<input>\\n\\n' when there is one).",
    )


def use_packing(model: Any, choice: bool | None) -> bool:
    """The recipe's packing choice; by default on only with a varlen (flash) attention kernel."""
    if choice is not None:
        return choice
    implementation = str(getattr(model.config, "_attn_implementation", "") or "")
    return "flash" in implementation


def _lm_columns(split: Any) -> Any:
    keep = [c for c in ("input_ids", "completion_mask") if c in split.column_names]
    return split.select_columns(keep)


def lm_trainer(inputs: TrainerInputs) -> Any:
    """trl's `SFTTrainer` on token ids: demonstrations (loss on the completion by default) or, for
    continued pretraining, a corpus."""
    from trl import SFTConfig, SFTTrainer

    method = inputs.method
    shared = dict(inputs.shared)
    packing = use_packing(inputs.model, method.packing)
    if not packing and inputs.spec.group_by_length:
        shared["train_sampling_strategy"] = "group_by_length"
    args = SFTConfig(
        **shared,
        max_length=inputs.max_length,
        packing=packing,
        # a corpus document longer than a sequence continues in the next; a demonstration is
        # truncated rather than split from its prompt
        packing_strategy="bfd_split" if method.name == "pretrain" else "bfd",
        completion_only_loss=bool(getattr(method, "completion_only_loss", False)),
    )
    return batched_preparation_trainer(device_metrics_trainer(SFTTrainer))(
        model=inputs.model,
        args=args,
        train_dataset=_lm_columns(inputs.train),
        eval_dataset=_lm_columns(inputs.held) if inputs.held is not None else None,
        processing_class=inputs.tokenizer,
        callbacks=inputs.callbacks,
    )


def _labels_within(max_length: int, masked: bool) -> Any:
    """trl's label building and truncation of tokenized demonstrations, a batch at a time: a
    label per token (-100 where `completion_mask` is 0 when `masked`), both columns cut to the
    first `max_length` tokens."""

    def prepare(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        ids = batch["input_ids"]
        if masked:
            labels = [
                [t if m else -100 for t, m in zip(row, mask, strict=False)]
                for row, mask in zip(ids, batch["completion_mask"], strict=True)
            ]
        else:
            labels = [list(row) for row in ids]
        return {
            "input_ids": [row[:max_length] for row in ids],
            "labels": [row[:max_length] for row in labels],
        }

    return prepare


def _labelled(labels: list[int]) -> bool:
    return any(x != -100 for x in labels)


def batched_preparation_trainer(base: type) -> type:
    """trl's `SFTTrainer` (`base`) that prepares tokenized demonstrations in batches.

    Given token ids, trl builds their labels, truncates them and drops rows left without a label
    in three passes of one Python call per row, at every run (0.18 s for 1,000 rows here, minutes
    for large data). This trainer does the same in batches, checking the first row against trl's
    own preparation; anything else (packing, a corpus of text, assistant masks, another
    truncation side, a shuffle, a row that disagrees) is prepared by trl as it comes."""
    from datasets import Dataset

    class BatchedPreparationSFTTrainer(base):  # type: ignore[misc, valid-type]
        completion_only_loss: bool  # trl's, set in its __init__

        def _prepare_dataset(
            self,
            dataset: Any,
            processing_class: Any,
            args: Any,
            packing: bool,
            formatting_func: Any,
            dataset_name: str,
        ) -> Any:
            def trls(rows: Any) -> Any:
                return super(BatchedPreparationSFTTrainer, self)._prepare_dataset(
                    rows, processing_class, args, packing, formatting_func, dataset_name
                )

            columns = set(getattr(dataset, "column_names", None) or ())
            if (
                packing
                or formatting_func is not None
                or not isinstance(dataset, Dataset)
                or not len(dataset)
                or "input_ids" not in columns
                or not columns <= {"input_ids", "completion_mask"}
                or args.max_length is None
                or args.truncation_mode != "keep_start"
                or args.shuffle_dataset
            ):
                return trls(dataset)
            masked = bool(self.completion_only_loss) and "completion_mask" in columns
            labelled = dataset.map(
                _labels_within(args.max_length, masked),
                batched=True,
                remove_columns=["completion_mask"] if masked else None,  # as trl: kept unused
                num_proc=args.dataset_num_proc,
                desc=f"Labelling and truncating {dataset_name} dataset",
            )
            prepared = labelled.filter(
                lambda batch: [_labelled(row) for row in batch["labels"]],
                batched=True,
                num_proc=args.dataset_num_proc,
                desc=f"Dropping fully masked examples from {dataset_name} dataset",
            )
            # trl's own preparation of the first row kept, to compare with ours
            first = first_row(labelled, "labels", _labelled)
            probe = trls(dataset.select([first])) if first is not None else None
            same = (
                probe is not None
                and len(probe) == 1
                and probe.column_names == prepared.column_names
                and probe[0] == prepared[0]
            )
            if not same:
                log.info(
                    "the batched preparation differs from trl's: trl prepares %s", dataset_name
                )
                return trls(dataset)
            return prepared

    return BatchedPreparationSFTTrainer


def device_metrics_trainer(base: type) -> type:
    """trl's `SFTTrainer` (`base`) whose training step leaves its metrics on the device.

    trl reads the step's entropy, token accuracy and token count back to Python inside every
    training step: on a GPU each read waits for the forward pass to finish before the backward
    pass can be queued. This trainer computes the same loss the same way, keeps those three
    figures as device tensors and reads them once per logging step, where trl averages them;
    the logged values are the same. Anything off the plain path (evaluation, a custom loss,
    label smoothing, router losses, sequence parallelism) is trl's own."""
    import torch

    class DeviceMetricsSFTTrainer(base):  # type: ignore[misc, valid-type]
        _pending_tokens: Any = None

        def _plain_step(self, inputs: dict[str, Any]) -> bool:
            parallel = getattr(self.accelerator, "parallelism_config", None)
            return (
                self.model.training
                and self.compute_loss_func is None
                and not (self.label_smoother is not None and self.args.loss_type == "nll")
                and not self.aux_loss_enabled
                and ("attention_mask" in inputs or "position_ids" in inputs)
                and not (parallel is not None and getattr(parallel, "sp_enabled", False))
            )

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            if not self._plain_step(inputs):
                self._count_tokens()  # trl's step reports the count so far
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs["use_cache"] = False
            outputs = model(**inputs, fused_lm_head=True)
            per_token_loss = -outputs.log_probs  # zero on ignored positions
            if self.args.loss_type == "dft":
                per_token_loss = per_token_loss * outputs.log_probs.exp().detach()
            num_tokens = (
                outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            )
            loss = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())

            gather = self.accelerator.gather_for_metrics
            valid = gather(outputs.label_mask.sum()).sum().clamp(min=1)  # no label: both are 0
            metrics = self._metrics["train"]
            metrics["entropy"].append(gather(outputs.entropy.detach().sum()).sum() / valid)
            metrics["mean_token_accuracy"].append(gather(outputs.is_top1.sum()).sum() / valid)
            if "attention_mask" in inputs:
                count = inputs["attention_mask"].sum()
            else:  # padding-free: one row of packed positions
                count = torch.tensor(inputs["position_ids"].size(1), device=loss.device)
            tokens = gather(count).sum() // self._tp_size
            pending = self._pending_tokens
            self._pending_tokens = tokens if pending is None else pending + tokens
            return (loss, outputs) if return_outputs else loss

        def _count_tokens(self) -> None:
            if self._pending_tokens is not None:
                self._total_train_tokens += int(self._pending_tokens.item())
                self._pending_tokens = None
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            self._count_tokens()
            for values in self._metrics["train"].values():
                values[:] = [v.item() if isinstance(v, torch.Tensor) else v for v in values]
            super().log(logs, start_time)

    return DeviceMetricsSFTTrainer


SPEC = MethodSpec(
    config=SftMethod,
    build=build_lm,
    trainer=lm_trainer,
    artifact="adapter",
    tasks=("causal-lm",),
    formats=("prompt-completion", "alpaca", "chat"),
    objective="lm",
    default_metric="perplexity",
    default_learning_rate=2e-4,
    continuable=True,
)
