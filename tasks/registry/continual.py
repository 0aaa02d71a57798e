"""Continual retraining: a run that starts from a registered version's weights
(`train.init_from: champion | models:/NAME/VERSION`) instead of the base model, and the
forgetting guard that comes with it.

- `plan_init` finds the version to start from (the champion, or the named one), checks it was
  trained from the same base model with the same method, and says what the run will do in one
  line; the candidate key then holds that version, so a rerun after `champion` moved is a new
  candidate, and a rerun on the very data and recipe the champion was trained on is "unchanged".
- every run keeps its eval set as `eval/eval_set.parquet` (and an MLflow dataset input of the
  run), so a later run continuing it finds the rows it was judged on;
- `evaluate_previous` scores the new model on its parent's eval set beside the parent's own
  per-row results there: the gate's `previous_eval` guard pairs them (`tasks.core.promotion`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task

from tasks.core import settings
from tasks.core.errors import ModelError, RegistryError, first_line, retry_unless_user_error
from tasks.data.load import DataRef
from tasks.evaluation.classifier import ROW_TABLES, EvalResult, EvaluateSpec
from tasks.models.base import BaseModelSpec, reference
from tasks.registry.register import current_champion, version_metrics, with_registry_retries
from tasks.services import tracking
from tasks.services.secret_blocks import with_token
from tasks.tokenization.encoding import TokenizeSpec

EVAL_SET = "eval/eval_set.parquet"
PARENT_RUN = "mlflow_run_id"


@dataclass(frozen=True)
class ParentRef:
    """The registered version a run starts from."""

    model_name: str
    version: str
    run_id: str
    init_from: str  # champion | models:/NAME/VERSION


@dataclass(frozen=True)
class InitPlan:
    """Where a run starts: `parent` None means the base model. `note` is the line the run shows;
    `key` ("name/version", or "" from the base) goes into the candidate key."""

    init_from: str = "base"
    parent: ParentRef | None = None
    note: str = ""
    key: str = ""


def plan_init(
    name: str,
    init_from: str,
    base: BaseModelSpec,
    method: str,
    recipe_hash: str,
    data_fingerprint: str,
) -> InitPlan:
    """Resolve `train.init_from` against the registry (one line for what cannot be honoured)."""
    if init_from == "base":
        return InitPlan()
    if init_from == "champion":
        version = with_registry_retries(
            lambda: current_champion(name),
            f"find the champion of '{name}'",
            "nothing was trained; run again once MLflow answers",
        )
        if version is None:
            return InitPlan(
                init_from,
                None,
                f"train.init_from: champion: '{name}' has no champion yet; training from the "
                "base model",
            )
        what = f"champion ({name} version {version.version})"
    else:
        model, _, number = init_from.removeprefix("models:/").rpartition("/")
        version = _registered_version(model, number, init_from)
        what = f"{model} version {number}"
    tags = version.tags or {}
    _check_lineage(tags, what, base, method)
    parent = ParentRef(str(version.name), str(version.version), _run_of(version), init_from)
    key = f"{version.name}/{version.version}"
    same_data = tags.get("data_fingerprint") == data_fingerprint
    if init_from == "champion" and same_data and tags.get("recipe_hash") == recipe_hash:
        # the champion itself came from this recipe and data: continuing it on the same data
        # would train the same rows again; the candidate is the champion's own
        key = _parent_key(tags)
    note = f"train.init_from: {init_from}: starting from {what}'s weights"
    return InitPlan(init_from, parent, note, key)


def _registered_version(model: str, number: str, init_from: str) -> Any:
    mlc = tracking.client()
    try:
        return mlc.get_model_version(model, number)
    except Exception as exc:
        from mlflow.exceptions import MlflowException

        if not isinstance(exc, MlflowException):
            raise
        raise ModelError(
            f"train.init_from: {init_from}: no such registered version ({first_line(exc)}); "
            f"list them with `tuneline models {model}`"
        ) from None


def _run_of(version: Any) -> str:
    return str((version.tags or {}).get(PARENT_RUN) or version.run_id or "")


def _parent_key(tags: dict[str, str]) -> str:
    parent = tags.get("parent_version", "")
    return f"{tags.get('parent_model', '')}/{parent}" if parent else ""


def same_base(ref: dict[str, Any], other: dict[str, Any]) -> bool:
    """Two base-model references name the same model: the same folder contents for a local
    folder (it may have moved), else the same id and revision."""
    if ref.get("kind") == "local" or other.get("kind") == "local":
        return ref.get("digest") == other.get("digest") and bool(ref.get("digest"))
    keys = ("path", "revision", "package_version", "builder_version")
    return all(ref.get(k) == other.get(k) for k in keys)


def _check_lineage(tags: dict[str, str], what: str, base: BaseModelSpec, method: str) -> None:
    theirs = tags.get("method", "")
    if theirs != method:
        raise ModelError(
            f"train.init_from: {what} was trained with method '{theirs}', this recipe uses "
            f"'{method}'; continue with the same method, or set train.init_from: base"
        )
    try:
        ref = json.loads(tags.get("base_model_ref", "{}"))
    except ValueError:
        ref = {}
    if not same_base(ref, reference(base)):
        raise ModelError(
            f"train.init_from: {what} was trained from base model '{tags.get('base_model')}', "
            f"not this recipe's '{base.path}'; continue from the same base model, or set "
            "train.init_from: base"
        )


def lineage_tags(plan: InitPlan) -> dict[str, str]:
    """The version's tags on where its training started."""
    parent = plan.parent
    return {
        "init_from": plan.init_from,
        "parent_model": parent.model_name if parent else "",
        "parent_version": parent.version if parent else "",
    }


@task(
    name="resolve_init",
    retries=2,
    retry_delay_seconds=[2, 5],
    retry_condition_fn=retry_unless_user_error,
)
def resolve_init(
    name: str,
    init_from: str,
    base: BaseModelSpec,
    method: str,
    recipe_hash: str,
    data_fingerprint: str,
) -> InitPlan:
    """Where this run starts (`plan_init`); its one line goes to the flow's log."""
    plan = plan_init(name, init_from, base, method, recipe_hash, data_fingerprint)
    if plan.note:
        print(plan.note)
    return plan


@task(
    name="fetch_parent",
    retries=2,
    retry_delay_seconds=[2, 5],
    retry_condition_fn=retry_unless_user_error,
)
def fetch_parent(plan: InitPlan, method: Any, labels: list[str], out_dir: str) -> str | None:
    """The parent version's tuneline artifact, downloaded under `out_dir` and checked against
    the recipe (same method settings and labels); None when the run starts from the base."""
    if plan.parent is None:
        return None
    import mlflow

    from tasks.training.warm_start import check_artifact

    parent = plan.parent
    uri = f"models:/{parent.model_name}/{parent.version}"
    mlflow.set_tracking_uri(settings.tracking_uri())
    target = Path(out_dir) / "parent"
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target)))
    except Exception as exc:
        raise RegistryError(f"train.init_from: cannot download {uri} ({first_line(exc)})") from exc
    folder = local / "artifacts" / "artifact"
    check_artifact(folder, method, labels, f"{parent.model_name} version {parent.version}")
    return str(folder)


# -- the eval set, kept for the runs that continue this one ---------------------------------------


@task(
    name="keep_eval_set",
    retries=2,
    retry_delay_seconds=[2, 5],
    retry_condition_fn=retry_unless_user_error,
)
def keep_eval_set(data: DataRef, run_id: str) -> None:
    """Log the eval rows (as loaded: the recipe's format) as `eval/eval_set.parquet` and as the
    run's MLflow dataset input of context `eval`, digest = the data fingerprint."""
    import shutil

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / Path(EVAL_SET).name
        shutil.copyfile(data.eval_path, copy)
        tracking.client().log_artifact(run_id, str(copy), str(Path(EVAL_SET).parent))
    _log_dataset_input(run_id, data)


def _log_dataset_input(run_id: str, data: DataRef) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    dataset = Dataset(
        name="eval",
        digest=data.fingerprint[:36],
        source_type="local",
        source=json.dumps({"uri": f"runs:/{run_id}/{EVAL_SET}"}),
        profile=json.dumps({"num_rows": data.n_eval}),
    )
    tags = [InputTag("mlflow.data.context", "eval")]
    tracking.client().log_inputs(run_id, datasets=[DatasetInput(dataset, tags)])


# -- the new model on its parent's eval set ---------------------------------------------------------


def _download(run_id: str, path: str, folder: Path) -> str | None:
    try:
        return str(tracking.client().download_artifacts(run_id, path, str(folder)))
    except Exception:
        from tasks.registry.register import reachable

        if not reachable():
            raise  # an outage, not a missing file: the task retries
        return None


def parent_eval_set(parent: ParentRef, folder: Path) -> str | None:
    """The parent's eval rows as a parquet file: its kept eval set, or for a classifier
    registered before eval sets were kept, the texts and labels of its eval predictions."""
    folder.mkdir(parents=True, exist_ok=True)
    found = _download(parent.run_id, EVAL_SET, folder)
    if found:
        return found
    table = _download(parent.run_id, "eval/eval_predictions.jsonl", folder)
    if not table:
        return None
    import pandas as pd

    frame = pd.read_json(table, lines=True)
    if frame.empty or not {"text", "label"} <= set(frame.columns):
        return None
    kept = frame[["text", "label", "where"]].rename(columns={"where": "_where"})
    target = folder / "eval_set.parquet"
    kept.to_parquet(target)
    return str(target)


def parent_rows(parent: ParentRef, folder: Path) -> str | None:
    """The parent's own per-row eval results (the table the champion gate reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    for table in ROW_TABLES:
        found = _download(parent.run_id, f"eval/{table}", folder)
        if found:
            return found
    return None


def _eval_ref(path: str, like: DataRef) -> DataRef:
    import pandas as pd

    rows = len(pd.read_parquet(path))
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:20]
    return DataRef(
        fingerprint=f"previous-{digest}",
        format=like.format,
        train_path=path,
        eval_path=path,
        n_train=rows,
        n_eval=rows,
        labels=list(like.labels),
    )


def measure_previous(
    artifact: str,
    parent: ParentRef,
    data: DataRef,
    base: BaseModelSpec,
    spec: EvaluateSpec,
    tokenize_spec: TokenizeSpec,
    method: Any,
    seed: int,
    out_dir: Path,
) -> dict[str, Any]:
    """The trained `artifact` on `parent`'s eval set, beside the parent's results there: what
    `EvalResult.previous` holds."""
    against = f"parent version {parent.version} on its eval set"
    info: dict[str, Any] = {"against": against, "version": parent.version}
    folder = out_dir / "previous_eval"
    eval_set = parent_eval_set(parent, folder / "parent")
    theirs = parent_rows(parent, folder / "parent")
    if eval_set is None or theirs is None:
        missing = "eval set" if eval_set is None else "per-row eval results"
        info["missing"] = (
            f"version {parent.version}'s {missing} cannot be found in its run {parent.run_id}"
        )
        return info
    quiet = spec.model_copy(update={"compare_base": False, "icl_shots": 0})
    ref = _eval_ref(eval_set, data)
    if data.format == "classification" and method is not None and _classifies(method):
        from tasks.evaluation.classifier import evaluate_classifier

        result = evaluate_classifier(artifact, ref, base, quiet, seed, folder)
    else:
        from tasks.evaluation.causal import evaluate_causal
        from tasks.tokenization.encoding import tokenize

        tokenized = tokenize(ref, base, tokenize_spec, method)
        result = evaluate_causal(artifact, tokenized, base, quiet, seed, folder)
    parent_metrics = version_metrics_of(parent)
    info.update(
        {
            "metrics": result.metrics,
            "parent_metrics": {k: v for k, v in parent_metrics.items() if k in result.metrics},
            "rows_path": result.rows_path,
            "parent_rows_path": theirs,
            "rows": ref.n_eval,
        }
    )
    return info


def _classifies(method: Any) -> bool:
    from tasks.training import METHODS

    return METHODS[method.name].objective == "classify"


def version_metrics_of(parent: ParentRef) -> dict[str, float]:
    version = tracking.client().get_model_version(parent.model_name, parent.version)
    return version_metrics(version)


@task(
    name="evaluate_previous",
    retries=2,
    retry_delay_seconds=[2, 5],
    retry_condition_fn=retry_unless_user_error,
)
def evaluate_previous(
    evaluated: EvalResult,
    artifact: str,
    plan: InitPlan,
    data: DataRef,
    base: BaseModelSpec,
    spec: EvaluateSpec,
    tokenize_spec: TokenizeSpec,
    method: Any,
    seed: int,
    out_dir: str,
    run_id: str | None,
) -> EvalResult:
    """For a run started from a registered version: the new model on the eval set that version
    was judged on (`previous_eval_*` metrics, `eval/previous/` artifacts); `evaluated` as it is
    for a run from the base model."""
    if plan.parent is None:
        return evaluated
    info = measure_previous(
        artifact,
        plan.parent,
        data,
        with_token(base),
        spec,
        tokenize_spec,
        method,
        seed,
        Path(out_dir),
    )
    if run_id:
        tracking.log_metrics(
            run_id, {f"previous_eval_{k}": v for k, v in info.get("metrics", {}).items()}
        )
        tracking.log_metrics(
            run_id, {f"parent_eval_{k}": v for k, v in info.get("parent_metrics", {}).items()}
        )
        if info.get("rows_path"):
            tracking.log_file(run_id, info["rows_path"], "eval/previous")
    if info.get("missing"):
        print(f"previous_eval: {info['missing']}")
    else:
        shown = ", ".join(
            f"{k} {v:.4f} (version {plan.parent.version}: "
            f"{info['parent_metrics'].get(k, float('nan')):.4f})"
            for k, v in info["metrics"].items()
        )
        print(f"previous_eval on version {plan.parent.version}'s {info['rows']} eval rows: {shown}")
    return dataclasses.replace(evaluated, previous=info)
