"""Linear probe: frozen encoder embeddings (mean-pooled) + scikit-learn logistic regression.

The fitted classifier becomes a linear layer on top of the frozen encoder (`ProbeClassifier`),
so it predicts, saves (safetensors) and loads like every other classification artifact.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from tasks.training.base import BuildContext, MethodConfig, MethodSpec

HEAD_FILE = "probe.safetensors"


class ProbeMethod(MethodConfig):
    """Logistic regression on frozen sentence embeddings."""

    name: Literal["probe"] = "probe"
    C: float = Field(default=1.0, gt=0, description="Inverse regularisation strength.")
    max_iter: int = Field(default=2000, ge=10, description="Solver iterations.")
    pooling: Literal["mean", "cls"] = Field(
        default="mean", description="How tokens become one vector."
    )


def _make_module() -> Any:
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
                str(Path(folder) / HEAD_FILE),
            )
            meta = {"pooling": self.pooling, "num_labels": self.head.out_features}
            (Path(folder) / "probe.json").write_text(json.dumps(meta))

    return ProbeClassifier


def build(encoder: Any, config: ProbeMethod, ctx: BuildContext) -> Any:
    return _make_module()(encoder, ctx.num_labels, config.pooling)


def load(encoder: Any, folder: str | Path) -> Any:
    """A saved probe on top of `encoder`."""
    from safetensors.torch import load_file

    meta = json.loads((Path(folder) / "probe.json").read_text())
    module = _make_module()(encoder, int(meta["num_labels"]), meta["pooling"])
    module.head.load_state_dict(load_file(str(Path(folder) / HEAD_FILE)))
    return module


def embeddings(
    module: Any, tokenizer: Any, texts: list[str], max_length: int, batch: int = 64
) -> np.ndarray:
    import torch

    from tasks.artifacts import length_ordered_batches

    out = np.zeros((len(texts), module.head.in_features), dtype=np.float32)
    module.eval()
    with torch.inference_mode():
        for idx in length_ordered_batches(texts, batch):
            enc = tokenizer(
                [texts[i] for i in idx],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            out[idx] = module.embed(**enc).float().cpu().numpy()
    return out


def fit_probe(
    module: Any,
    tokenizer: Any,
    config: ProbeMethod,
    texts: list[str],
    labels: np.ndarray,
    max_length: int,
) -> dict[str, float]:
    """Fit the logistic regression on frozen embeddings and copy it into the linear head."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    started = time.perf_counter()
    features = embeddings(module, tokenizer, texts, max_length)
    classifier = LogisticRegression(C=config.C, max_iter=config.max_iter)
    classifier.fit(features, labels)
    num_labels = module.head.out_features
    weight = np.zeros((num_labels, features.shape[1]), dtype=np.float32)
    bias = np.zeros(num_labels, dtype=np.float32)
    classes = [int(c) for c in classifier.classes_]
    if len(classes) == 2:
        # Binary: sklearn keeps one vector for the second class; logits [0, w.x + b] give the
        # same probabilities through softmax as its sigmoid.
        weight[classes[1]] = classifier.coef_[0]
        bias[classes[1]] = classifier.intercept_[0]
    else:
        for row, cls in enumerate(classes):
            weight[cls] = classifier.coef_[row]
            bias[cls] = classifier.intercept_[row]
    with torch.no_grad():
        module.head.weight.copy_(torch.from_numpy(weight))
        module.head.bias.copy_(torch.from_numpy(bias))
    probabilities = classifier.predict_proba(features)
    return {
        "loss": float(log_loss(labels, probabilities, labels=classifier.classes_)),
        "iterations": float(np.max(classifier.n_iter_)),
        "seconds": time.perf_counter() - started,
    }


SPEC = MethodSpec(
    config=ProbeMethod, build=build, artifact="probe", fit=fit_probe, default_learning_rate=1e-3
)
