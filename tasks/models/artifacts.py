"""The on-disk form of a trained model, shared by training, evaluation and the MLflow pyfunc.

<artifact>/tuneline.json   manifest: task, kind (adapter | weights | probe), labels, base ref
<artifact>/model/          peft adapter, full weights (safetensors), or a probe's linear head
<artifact>/tokenizer/      the tokenizer used in training
<artifact>/base/           a copy of the base model, only when it was a local folder
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Atomic folder writes live in `tasks.core.atomic`; the training runners write artifacts through this
# module's name for them.

MANIFEST = "tuneline.json"
PROBE_HEAD_FILE = "probe.safetensors"


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    from tasks.core.secrets import redact_obj

    (folder / MANIFEST).write_text(json.dumps(redact_obj(manifest), indent=2, default=str))


def save_artifact(
    model: Any,
    tokenizer: Any,
    target: Path,
    manifest: dict[str, Any],
    base: Any,
    history: list[dict[str, float]],
) -> None:
    """Write a trained artifact (model, tokenizer, loss history, manifest) for either family to
    a staging folder and move it into place only when complete. An artifact that needs its base
    model (an adapter, a probe) carries a copy of a local base folder, which would not resolve
    elsewhere."""
    import shutil

    from tasks.core import atomic
    from tasks.models.base import is_local, resolve_model_path

    with atomic.staged(target) as tmp:
        model.save_pretrained(str(tmp / "model"), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        if manifest["kind"] in ("adapter", "probe") and is_local(base):
            shutil.copytree(resolve_model_path(base), tmp / "base")
        (tmp / "history.json").write_text(json.dumps(history))
        write_manifest(tmp, manifest)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a tuneline model artifact (no {MANIFEST})")
    return json.loads(path.read_text())


def label_kwargs(labels: list[str]) -> dict[str, Any]:
    """The label arguments of a sequence-classification head."""
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {lab: i for i, lab in enumerate(labels)},
    }


def length_ordered_batches(texts: list[str], batch_size: int) -> Iterator[list[int]]:
    """Indices of `texts` in batches of similar length (less padding at inference)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _base_spec(folder: Path, manifest: dict[str, Any]) -> Any:
    from tasks.models.base import BaseModelSpec

    base = manifest["base"]
    if (folder / "base").is_dir():
        return BaseModelSpec(path=str(folder / "base"))
    return BaseModelSpec(
        path=base["path"],
        revision=base.get("revision"),
        trust_remote_code=bool(base.get("trust_remote_code", False)),
    )


def probe_module() -> Any:
    """The network of a linear-probe artifact, a frozen encoder and a linear head over its pooled
    embeddings (a class built on first use: it needs torch). The probe method
    (`tasks.training.encoder.probe`) builds and fits it; what it saves and how it loads back is the
    artifact's, so that loading a probe needs no training code."""
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    class ProbeClassifier(torch.nn.Module):
        """Frozen encoder + linear head over pooled embeddings."""

        def __init__(self, encoder: Any, num_labels: int, pooling: str) -> None:
            super().__init__()
            self.encoder = encoder
            self.pooling = pooling
            self.head = torch.nn.Linear(encoder.config.hidden_size, num_labels)
            for parameter in self.encoder.parameters():
                parameter.requires_grad = False

        def embed(self, input_ids: Any, attention_mask: Any, **kwargs: Any) -> Any:
            kwargs.pop("labels", None)
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, **kwargs
            ).last_hidden_state
            if self.pooling == "cls":
                return hidden[:, 0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

        def forward(self, input_ids: Any, attention_mask: Any, **kwargs: Any) -> Any:
            return SequenceClassifierOutput(
                logits=self.head(self.embed(input_ids, attention_mask, **kwargs))
            )

        def save_pretrained(self, folder: str, **_: Any) -> None:
            from safetensors.torch import save_file

            Path(folder).mkdir(parents=True, exist_ok=True)
            save_file(
                {k: v.contiguous() for k, v in self.head.state_dict().items()},
                str(Path(folder) / PROBE_HEAD_FILE),
            )
            meta = {"pooling": self.pooling, "num_labels": self.head.out_features}
            (Path(folder) / "probe.json").write_text(json.dumps(meta))

    return ProbeClassifier


def load_probe(encoder: Any, folder: str | Path) -> Any:
    """A saved probe on top of `encoder`."""
    from safetensors.torch import load_file

    meta = json.loads((Path(folder) / "probe.json").read_text())
    module = probe_module()(encoder, int(meta["num_labels"]), meta["pooling"])
    module.head.load_state_dict(load_file(str(Path(folder) / PROBE_HEAD_FILE)))
    return module


def load_classifier(folder: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """(model in eval mode, tokenizer, manifest) for a classification artifact."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tasks.models.base import load_pretrained

    root = Path(folder)
    manifest = read_manifest(root)
    tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
    if manifest["kind"] == "probe":
        from transformers import AutoModel

        encoder = load_pretrained(AutoModel, _base_spec(root, manifest))
        model = load_probe(encoder, root / "model")
    elif manifest["kind"] == "adapter":
        from peft import PeftModel

        base = load_pretrained(
            AutoModelForSequenceClassification,
            _base_spec(root, manifest),
            **label_kwargs(manifest["labels"]),
        )
        model = PeftModel.from_pretrained(base, str(root / "model"))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(root / "model"), use_safetensors=True
        )
    model.eval()
    return model, tokenizer, manifest


def predict_proba(
    model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 64
) -> Any:
    """Class probabilities, batched in length order (less padding), returned in input order."""
    import numpy as np
    import torch

    if not texts:
        return np.zeros((0, 0))
    out: list[Any] = [None] * len(texts)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for idx in length_ordered_batches(texts, batch_size):
            batch = tokenizer(
                [texts[i] for i in idx],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            ).to(device)
            probs = torch.softmax(model(**batch).logits.float(), dim=-1).cpu().numpy()
            for j, i in enumerate(idx):
                out[i] = probs[j]
    return np.stack(out)


def load_causal(folder: str | Path, merge: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """(model in eval mode, tokenizer, manifest) for a causal-LM artifact: a language model, or
    for a reward model the network with its scoring head. Adapters are merged into their base."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from tasks.models.base import load_pretrained

    root = Path(folder)
    manifest = read_manifest(root)
    tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
    scorer = manifest.get("objective") == "score"
    auto = AutoModelForSequenceClassification if scorer else AutoModelForCausalLM
    extra = {"num_labels": 1} if scorer else {}
    if manifest["kind"] == "adapter":
        from peft import PeftModel

        base = load_pretrained(auto, _base_spec(root, manifest), **extra)
        model: Any = PeftModel.from_pretrained(base, str(root / "model"))
        if merge:
            model = model.merge_and_unload()
    else:
        model = auto.from_pretrained(str(root / "model"), use_safetensors=True, **extra)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer, manifest
