"""Checkpoints that survive a crash: a checkpoint counts only once its completion marker is
written (after the Trainer finished writing it), a re-run resumes from the newest complete one,
and a guard refuses a resume whose trainable weights are not the checkpoint's (a resume that
silently starts a fresh adapter)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

MARKER = "tuneline-complete.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")


def trainable_digest(model: Any) -> str:
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
        if parameter.requires_grad:
            digest.update(name.encode())
            digest.update(parameter.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def latest_complete(folder: Path) -> Path | None:
    """The newest checkpoint with a completion marker; incomplete ones are removed."""
    if not folder.is_dir():
        return None
    complete: list[tuple[int, Path]] = []
    for child in folder.iterdir():
        match = _STEP.match(child.name)
        if not match or not child.is_dir():
            continue
        if (child / MARKER).is_file():
            complete.append((int(match.group(1)), child))
        else:
            shutil.rmtree(child, ignore_errors=True)  # killed while writing it
    return max(complete)[1] if complete else None


def marker_step(checkpoint: Path) -> int:
    return int(json.loads((checkpoint / MARKER).read_text())["step"])


def callbacks(model: Any, resume: Path | None) -> list[Any]:
    from transformers import TrainerCallback

    class MarkComplete(TrainerCallback):  # type: ignore[misc]
        """Runs after the Trainer has written checkpoint-N completely."""

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                payload = {"step": state.global_step, "trainable": trainable_digest(model)}
                tmp = folder / f".{MARKER}.tmp"
                tmp.write_text(json.dumps(payload))
                tmp.replace(folder / MARKER)

    class ResumeGuard(TrainerCallback):  # type: ignore[misc]
        """After the Trainer loaded the checkpoint: the weights must be the checkpoint's."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if resume is None:
                return
            expected = json.loads((resume / MARKER).read_text())["trainable"]
            if trainable_digest(model) != expected:
                raise RuntimeError(
                    f"resume from {resume} did not restore its trainable weights; refusing to "
                    "continue with a fresh adapter (delete the checkpoint folder to start over)"
                )

    return [MarkComplete(), ResumeGuard()]
