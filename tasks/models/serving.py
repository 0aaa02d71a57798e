"""The MLflow pyfunc wrapper every registered tuneline model loads through.

Kept light on imports (no Prefect) because it is bundled with each model as code and imported
wherever `mlflow.pyfunc.load_model("models:/<name>@champion")` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.pyfunc import PythonModel


class ClassifierModel(PythonModel):
    """Predicts a label for each input string."""

    def load_context(self, context: Any) -> None:
        from tasks.models.artifacts import load_classifier

        self.model, self.tokenizer, self.manifest = load_classifier(context.artifacts["artifact"])
        self.labels = list(self.manifest["labels"])

    def predict(
        self, context: Any, model_input: list[str], params: dict[str, Any] | None = None
    ) -> list[str]:
        from tasks.models.artifacts import predict_proba

        texts = [str(t) for t in _as_texts(model_input)]
        probs = predict_proba(self.model, self.tokenizer, texts, int(self.manifest["max_length"]))
        return [self.labels[i] for i in probs.argmax(axis=-1)] if len(texts) else []


class CausalLMModel(PythonModel):
    """Generates an answer for each input prompt. A request is rendered the way the training
    prompts were (alpaca template, chat template, or as is); `params` may set
    `max_new_tokens` (default 64) and `raw: true` to send prompts untouched."""

    def load_context(self, context: Any) -> None:
        from tasks.models.artifacts import load_causal

        self.model, self.tokenizer, self.manifest = load_causal(context.artifacts["artifact"])

    # `model_input` has no type hint: MLflow would take the model's signature from it and drop
    # the declared `params` (then ignored at inference, with a warning). Nor does MLflow check
    # the input against hints here (its attribute for that; it would advise adding them).
    _skip_type_hint_validation = True

    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> list[str]:
        from tasks.models.inference import generate
        from tasks.models.prompts import prompt_for_request

        params = params or {}
        texts = [str(t) for t in _as_texts(model_input)]
        if not params.get("raw"):
            texts = [prompt_for_request(self.manifest, self.tokenizer, t) for t in texts]
        limit = int(params.get("max_new_tokens", 64))
        return generate(
            self.model, self.tokenizer, texts, limit, int(self.manifest["max_length"]), 16
        )


class RewardScorerModel(PythonModel):
    """Scores each input text (a prompt followed by an answer); higher is preferred."""

    def load_context(self, context: Any) -> None:
        from tasks.models.artifacts import load_causal

        self.model, self.tokenizer, self.manifest = load_causal(context.artifacts["artifact"])

    def predict(
        self, context: Any, model_input: list[str], params: dict[str, Any] | None = None
    ) -> list[float]:
        from tasks.models.inference import reward_scores

        texts = [str(t) for t in _as_texts(model_input)]
        return reward_scores(
            self.model, self.tokenizer, texts, int(self.manifest["max_length"]), 16
        )


def python_model_for(manifest: dict[str, Any]) -> type[PythonModel]:
    """The pyfunc wrapper an artifact registers with."""
    if manifest.get("task") != "causal-lm":
        return ClassifierModel
    return RewardScorerModel if manifest.get("objective") == "score" else CausalLMModel


_MODEL_CODE = '''"""The entry MLflow loads this registered tuneline model through (a model from code, not a
pickle). The code it imports is in the model's `code` folder; `load_context` loads the artifact."""

import mlflow

from tasks.models.serving import {cls}

mlflow.models.set_model({cls}())
'''


def model_code(manifest: dict[str, Any], folder: Path) -> str:
    """Write under `folder` the script a version is logged with (MLflow's models from code),
    naming its pyfunc wrapper: loading the version runs the script instead of unpickling an
    object, so it loads where MLflow's pickle deserialization is turned off
    (`MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false`), and logging draws no warning about pickles."""
    script = folder / "tuneline_model.py"
    script.write_text(_MODEL_CODE.format(cls=python_model_for(manifest).__name__))
    return str(script)


def _as_texts(model_input: Any) -> list[Any]:
    if hasattr(model_input, "iloc"):  # a DataFrame or Series
        if hasattr(model_input, "columns"):
            column = "text" if "text" in model_input.columns else model_input.columns[0]
            return list(model_input[column])
        return list(model_input)
    if isinstance(model_input, str):
        return [model_input]
    return list(model_input)


def load_registered(model_uri: str) -> Any:
    """`mlflow.pyfunc.load_model` against tuneline's tracking store, with a clear error."""
    import mlflow

    from tasks.core import settings
    from tasks.core.errors import ModelError, first_line

    mlflow.set_tracking_uri(settings.tracking_uri())
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:
        first = first_line(exc)
        raise ModelError(
            f"cannot load '{model_uri}': {first}. List what is registered with `tuneline models`"
        ) from None
