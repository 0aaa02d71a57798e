"""Pictures people would rather look at than read: loss curve, confusion matrix, token lengths."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curve(history: list[dict[str, float]], path: Path, title: str = "loss") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    train = [h for h in history if "loss" in h]
    held = [h for h in history if "eval_loss" in h]
    ax.plot([h["step"] for h in train], [h["loss"] for h in train], marker=".", label="train")
    if held:
        ax.plot([h["step"] for h in held], [h["eval_loss"] for h in held], marker="o", label="eval")
        ax.legend()
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion(matrix: list[list[int]], labels: list[str], path: Path) -> Path:
    plt = _pyplot()
    size = max(3.5, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            color = "white" if value > peak / 2 else "black"
            ax.text(j, i, str(value), ha="center", va="center", color=color)
    ax.set_title("confusion matrix (eval)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def length_histogram(lengths: list[int], max_length: int, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(lengths, bins=min(50, max(5, len(set(lengths)))), color="#4a7ab5")
    ax.axvline(max_length, color="red", linestyle="--", label=f"max_length {max_length}")
    ax.set_xlabel("tokens per example (before truncation)")
    ax.set_ylabel("examples")
    ax.legend()
    ax.set_title("token lengths (train)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
