"""Finding the reward model an RLHF recipe names: a registered one (`models:/<name>@<alias>` or
`models:/<name>/<version>`) downloaded from the MLflow registry, or a local artifact folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.core.errors import ModelError, first_line


def reward_artifact(reference: str) -> Path:
    """The local folder of the tuneline reward artifact behind `reference`."""
    if reference.startswith("models:/"):
        import mlflow

        from tasks.core import settings

        mlflow.set_tracking_uri(settings.tracking_uri())
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=reference))
        except Exception as exc:
            raise ModelError(
                f"method.reward_model: cannot load '{reference}' ({first_line(exc)}); "
                f"{_what_to_do(reference)}"
            ) from None
        folder = local / "artifacts" / "artifact"
    else:
        folder = Path(reference).expanduser()
    manifest = folder / "tuneline.json"
    if not manifest.is_file():
        raise ModelError(
            f"method.reward_model: '{reference}' is not a tuneline model artifact (no tuneline.json)"
        )
    from tasks.models.artifacts import read_manifest

    if read_manifest(folder).get("objective") != "score":
        raise ModelError(
            f"method.reward_model: '{reference}' is not a reward model (trained with method "
            "`reward`)"
        )
    return folder


def _what_to_do(reference: str) -> str:
    """The next step when a registered reward model cannot be loaded: when versions exist but
    none holds the alias (none passed its gate), name them rather than ask to train one."""
    name, _, alias = reference.removeprefix("models:/").partition("@")
    if alias:
        from contextlib import suppress

        from tasks.services import tracking

        with suppress(Exception):
            found = tracking.client().search_model_versions(f"name = '{name}'")
            numbers = sorted((int(v.version) for v in found), reverse=True)
            if numbers:
                listed = ", ".join(str(n) for n in numbers[:5])
                return (
                    f"'{name}' has version(s) {listed} but none holds '{alias}' (none passed "
                    f"its gate): name one (models:/{name}/{numbers[0]}), or promote it with "
                    f"`tuneline promote {name} {numbers[0]}` once you have looked at why"
                )
    return (
        "train and register a reward model first (a recipe with method `reward`), or name a folder"
    )


def load_reward_model(reference: str) -> tuple[Any, Any]:
    """(scoring model in eval mode, its tokenizer)."""
    from tasks.models.artifacts import load_causal

    model, tokenizer, _ = load_causal(reward_artifact(reference))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, tokenizer
