"""Finding the reward model an RLHF recipe names: a registered one (`models:/<name>@<alias>` or
`models:/<name>/<version>`) downloaded from the MLflow registry, or a local artifact folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.errors import ModelError, first_line


def reward_artifact(reference: str) -> Path:
    """The local folder of the tuneline reward artifact behind `reference`."""
    if reference.startswith("models:/"):
        import mlflow

        from tasks import settings

        mlflow.set_tracking_uri(settings.tracking_uri())
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=reference))
        except Exception as exc:
            first = first_line(exc)
            raise ModelError(
                f"method.reward_model: cannot load '{reference}' ({first}); train and register "
                "a reward model first (a recipe with method `reward`), or name a folder"
            ) from None
        folder = local / "artifacts" / "artifact"
    else:
        folder = Path(reference).expanduser()
    manifest = folder / "tuneline.json"
    if not manifest.is_file():
        raise ModelError(
            f"method.reward_model: '{reference}' is not a tuneline model artifact (no tuneline.json)"
        )
    from tasks.artifacts import read_manifest

    if read_manifest(folder).get("objective") != "score":
        raise ModelError(
            f"method.reward_model: '{reference}' is not a reward model (trained with method "
            "`reward`)"
        )
    return folder


def load_reward_model(reference: str) -> tuple[Any, Any]:
    """(scoring model in eval mode, its tokenizer)."""
    from tasks.artifacts import load_causal

    model, tokenizer, _ = load_causal(reward_artifact(reference))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, tokenizer
