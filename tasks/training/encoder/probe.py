"""Linear probe: frozen encoder embeddings (mean-pooled) + scikit-learn logistic regression.

The fitted classifier becomes a linear layer on top of the frozen encoder (`ProbeClassifier`, in
`tasks.models.artifacts`, which loads it back), so it predicts, saves (safetensors) and loads like every
other classification artifact.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
from pydantic import Field

from tasks.models.artifacts import length_ordered_batches, probe_module
from tasks.training.base import BuildContext, FitStats, MethodConfig, MethodSpec


class ProbeMethod(MethodConfig):
    """Logistic regression on frozen sentence embeddings."""

    name: Literal["probe"] = "probe"
    C: float = Field(default=1.0, gt=0, description="Inverse regularisation strength.")
    max_iter: int = Field(default=2000, ge=10, description="Solver iterations.")
    pooling: Literal["mean", "cls"] = Field(
        default="mean", description="How tokens become one vector."
    )


def build(encoder: Any, config: ProbeMethod, ctx: BuildContext) -> Any:
    return probe_module()(encoder, ctx.num_labels, config.pooling)


def embeddings(
    module: Any, tokenizer: Any, texts: list[str], max_length: int, batch: int = 64
) -> np.ndarray:
    import torch

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
) -> FitStats:
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
    loss = float(log_loss(labels, probabilities, labels=classifier.classes_))
    iterations = int(np.max(classifier.n_iter_))
    seconds = time.perf_counter() - started
    return FitStats(
        train_loss=loss,
        steps=iterations,
        seconds=seconds,
        samples_per_second=len(texts) / seconds if seconds else 0.0,
        padding_share=0.0,
        tokens_per_second=0.0,  # the caller counts the tokens
        history=[{"step": float(iterations), "loss": loss}],
    )


SPEC = MethodSpec(
    config=ProbeMethod, build=build, artifact="probe", fit=fit_probe, default_learning_rate=1e-3
)
