"""The recipe: one YAML file naming the base model, data, contract, method, evaluation, registry
entry and schedule. Pydantic with `extra="forbid"` everywhere; the method block is a
discriminated union on `name`. Errors name the file, line, key and the valid keys or values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from data_contracts import ContractSpec
from tasks.core.errors import RecipeError
from tasks.core.secrets import inline_credential, redact, secret_names
from tasks.data.load import DataSpec
from tasks.evaluation.classifier import EvaluateSpec
from tasks.models.base import BaseModelSpec
from tasks.registry.register import RegisterSpec
from tasks.tokenization.encoding import TokenizeSpec
from tasks.training import METHODS, Method, TrainSpec
from tasks.training.warm_start import check_continuable


class DeploySpec(BaseModel):
    """When the recipe retrains by itself (used by `tuneline serve`)."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = Field(default=None, description="Cron schedule, e.g. `0 3 * * *`.")
    interval_minutes: float | None = Field(default=None, gt=0, description="Or a fixed interval.")
    timezone: str = Field(default="UTC", description="Timezone of the cron schedule.")
    on_new_data: bool = Field(default=False, description="Retrain when new curated data lands.")
    quiet_seconds: float = Field(
        default=120,
        ge=0,
        description="With on_new_data: how long the data's file listing must stay unchanged "
        "before new files count as landed (a `_SUCCESS` marker triggers at once).",
    )


class Recipe(BaseModel):
    """A declarative fine-tuning recipe."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="Registered model name in MLflow (letters, digits, . _ -).",
    )
    description: str = Field(default="", description="What this recipe is for.")
    task: Literal["classification", "causal-lm"] = Field(
        default="classification", description="classification (encoders) or causal-lm."
    )
    base_model: BaseModelSpec = Field(description="The pretrained model to start from.")
    data: DataSpec = Field(description="The curated data and its shape.")
    contract: ContractSpec = Field(
        default_factory=ContractSpec, description="The data contract checked before training."
    )
    tokenize: TokenizeSpec = Field(default_factory=TokenizeSpec, description="Tokenization.")
    method: Method = Field(description="The training method; `name` picks it.")
    train: TrainSpec = Field(default_factory=TrainSpec, description="Optimiser and loop settings.")
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec, description="Evaluation.")
    # `register` is the recipe key; the attribute is `registry` (BaseModel.register is taken).
    registry: RegisterSpec = Field(
        default_factory=RegisterSpec, alias="register", description="Registry and gate."
    )
    deploy: DeploySpec = Field(default_factory=DeploySpec, description="Schedule and triggers.")
    base_dir: str | None = Field(
        default=None,
        description="Folder relative paths resolve against (set from the recipe file's location).",
    )

    @field_validator("contract", mode="before")
    @classmethod
    def _contract_shorthand(cls, value: Any) -> Any:
        return {"use": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _method_fits(self) -> Recipe:
        """The method must train this task on this data format; the gate metric defaults to
        the method's own figure."""
        entry = METHODS[self.method.name]
        if self.task not in entry.tasks:
            fitting = [name for name, spec in METHODS.items() if self.task in spec.tasks]
            raise ValueError(
                f"method '{self.method.name}' is for task {entry.tasks[0]}, not {self.task}; "
                f"methods for {self.task}: {', '.join(fitting)}"
            )
        if self.data.format not in entry.formats:
            raise ValueError(
                f"method '{self.method.name}' trains on data.format "
                f"{' | '.join(entry.formats)}, not {self.data.format}"
            )
        if why := check_continuable(self.method.name, self.train.init_from):
            raise ValueError(why)
        if self.registry.gate.metric is None:
            self.registry.gate.metric = entry.default_metric
        return self

    def fingerprint(self) -> str:
        """Hash of everything that changes what gets trained (not the schedule, not base_dir, not
        whether a person approves the promotion)."""
        payload = self.model_dump(
            mode="json",
            exclude={
                "deploy": True,
                "base_dir": True,
                "description": True,
                "registry": {"approval", "approval_timeout"},
            },
        )
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


# -- loading -------------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A `--set` value: YAML scalar rules (numbers, true/false, null, [lists])."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides to the raw recipe mapping."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set '{item}': expected key=value, e.g. train.epochs=1")
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise RecipeError(f"--set '{item}': '{part}' is not a block")
            node = child
        node[parts[-1]] = parse_value(value)
    return raw


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in the YAML document to its 1-based line."""
    lines: dict[tuple[str, ...], int] = {}
    visited: set[int] = set()

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if id(node) in visited:  # an alias: already walked (and YAML bombs stay linear)
            return
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = (*path, str(key_node.value))
                lines[key] = key_node.start_mark.line + 1
                walk(value_node, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, str(i))] = item.start_mark.line + 1
                walk(item, (*path, str(i)))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _model_at(loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, tuple[str, ...]]:
    """The pydantic model owning the last key of `loc`, and the YAML path (union tags dropped)."""
    model: type[BaseModel] | None = Recipe
    path: list[str] = []
    items = list(loc)
    i = 0
    while i < len(items) - 1 and model is not None:
        key = str(items[i])
        path.append(key)
        field = _field(model, key)
        if field is None:
            return None, tuple(path)
        model = _submodel(field.annotation)
        if model is None and _union_members(field.annotation):
            members = _union_members(field.annotation)
            tag = str(items[i + 1]) if i + 1 < len(items) else ""
            model = members.get(tag)
            i += 1  # skip the discriminator tag pydantic puts in the location
        i += 1
    if i < len(items):
        path.append(str(items[i]))
    return model, tuple(path)


def _field(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items() if name != "base_dir"]


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 and len(args) == 1 else None


def _union_members(annotation: Any) -> dict[str, type[BaseModel]]:
    args = get_args(annotation)
    if get_origin(annotation) is not None and args and hasattr(args[0], "__args__"):
        args = get_args(args[0])  # Annotated[Union[...], Field(...)]
    members: dict[str, type[BaseModel]] = {}
    for arg in args:
        if isinstance(arg, type) and issubclass(arg, BaseModel) and "name" in arg.model_fields:
            members[str(arg.model_fields["name"].default)] = arg
    return members


def format_errors(exc: ValidationError, source: str, text: str) -> str:
    """One line per problem: file:line: key: what is wrong; valid keys or values."""
    index = _line_index(text)
    messages = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if not loc and err["type"] == "value_error":
            loc = ("method",)  # the cross-block checks are about the method block
        owner, path = _model_at(loc)
        dotted = ".".join(path) or "(top level)"
        line = None
        for cut in range(len(path), 0, -1):
            line = index.get(path[:cut])
            if line:
                break
        where = f"{source}:{line}" if line else source
        kind = err["type"]
        if kind == "extra_forbidden" and owner is not None:
            valid = ", ".join(_keys(owner))
            msg = f"unknown key '{path[-1]}'; valid keys here: {valid}"
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx", {})
            msg = f"unknown method '{ctx.get('tag')}'; valid: {ctx.get('expected_tags')}"
        elif kind == "literal_error":
            msg = f"{err['msg'].lower()}, got {_short(err.get('input'))}"
        elif kind == "value_error":
            msg = err["msg"].removeprefix("Value error, ")
        elif kind == "missing":
            msg = "required key is missing"
        else:
            msg = f"{err['msg']}, got {_short(err.get('input'))}"
        messages.append(f"{where}: {dotted}: {msg}")
    return "\n".join(messages)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _strings(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every string inside the raw recipe, with its key path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(child, (*path, str(key)))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _strings(child, (*path, str(i)))


def _keep_secrets_out(raw: dict[str, Any], source: str, text: str) -> None:
    """Prefect stores the recipe in its database as the flow run's parameters, so nothing secret
    may be in it: free text (the description) is masked, and a credential or a known secret value
    anywhere else is refused with its file:line, pointing to a `${NAME}` reference."""
    if isinstance(raw.get("description"), str):
        raw["description"] = redact(raw["description"])
    index: dict[tuple[str, ...], int] | None = None
    for path, value in _strings(raw):
        if path == ("description",):
            continue
        if inline_credential(value):
            problem = (
                "the URL holds a credential inline, which Prefect would store in clear with the "
                "run; put it in an environment variable and name it, e.g. "
                "https://user:${DATA_TOKEN}@host/train.jsonl (read when the data is loaded)"
            )
        elif names := secret_names(value):
            problem = (
                f"holds the value of {', '.join(names)}, which Prefect would store in clear with "
                "the run; name it instead (data paths take ${VARIABLE} references)"
            )
        else:
            continue
        index = _line_index(text) if index is None else index
        line = next(
            (index[path[:cut]] for cut in range(len(path), 0, -1) if path[:cut] in index), 0
        )
        where = f"{source}:{line}" if line else source
        raise RecipeError(f"{where}: {'.'.join(path)}: {problem}")


def _resolve_paths(raw: dict[str, Any], base_dir: Path) -> None:
    """Resolve relative local paths in the data, contract and base-model blocks."""

    def resolve(value: Any) -> Any:
        if not isinstance(value, str) or "://" in value or value.startswith(("package:", "tiny:")):
            return value
        if value.startswith("${"):  # the variable holds the whole place (read at load time)
            return value
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (base_dir / path).resolve())

    method = raw.get("method")
    reward_model = method.get("reward_model") if isinstance(method, dict) else None
    if (
        isinstance(method, dict)
        and isinstance(reward_model, str)
        and not reward_model.startswith("models:/")
    ):
        method["reward_model"] = resolve(reward_model)
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("train", "eval"):
            if isinstance(data.get(key), str):
                data[key] = resolve(data[key])
    base = raw.get("base_model")
    if isinstance(base, dict) and isinstance(base.get("path"), str):
        candidate = Path(base["path"]).expanduser()
        local = candidate if candidate.is_absolute() else base_dir / candidate
        if local.exists() or base["path"].startswith((".", "/", "~")):
            base["path"] = str(local.resolve())


# How many values a recipe may hold once its YAML aliases are expanded. A recipe written out by
# hand has a few hundred; aliases can make a short file expand exponentially ("billion laughs"),
# which hangs validation or the flow's parameter handling instead of failing.
MAX_YAML_VALUES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_nodes(root: yaml.Node, source: str) -> None:
    """Refuse duplicate keys (YAML keeps the last one silently) and aliases that expand past
    `MAX_YAML_VALUES`, each as one `file:line` line. Sizes are memoised per node, so the walk is
    linear in the file even for a bomb."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        line = node.start_mark.line + 1
        if key in open_nodes:
            raise RecipeError(f"{source}:{line}: a YAML alias refers to the value holding it")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                    name, at = str(key_node.value), key_node.start_mark.line + 1
                    if name in seen:
                        raise RecipeError(
                            f"{source}:{at}: key '{name}' appears twice (first on line "
                            f"{seen[name]}); keep one"
                        )
                    seen[name] = at
                total += size(key_node) + size(value_node)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        open_nodes.discard(key)
        if total > MAX_YAML_VALUES:
            raise RecipeError(
                f"{source}:{line}: YAML aliases expand this value to more than "
                f"{MAX_YAML_VALUES:,} values; a recipe is a short file: write the values out"
            )
        sizes[key] = total
        return total

    size(root)


def _load_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load`, with the node tree checked (`_check_nodes`) before it is built."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_nodes(root, source)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def parse_recipe(
    text: str,
    source: str = "<recipe>",
    base_dir: Path | None = None,
    overrides: list[str] | None = None,
) -> Recipe:
    if len(text) > 1_000_000:
        raise RecipeError(f"{source}: recipe is larger than 1 MB; a recipe is a short YAML file")
    try:
        raw = _load_yaml(text, source)
    except RecursionError:
        raise RecipeError(f"{source}: YAML nested too deeply to be a recipe") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{where}: not valid YAML ({problem})") from None
    if not isinstance(raw, dict):
        raise RecipeError(
            f"{source}: a recipe is a YAML mapping of keys (name, base_model, data, ...)"
        )
    raw = apply_overrides(raw, overrides or [])
    _keep_secrets_out(raw, source, text)
    if base_dir is not None:
        _resolve_paths(raw, base_dir)
        raw["base_dir"] = str(base_dir)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(format_errors(exc, source, text)) from None
    except RecursionError:
        raise RecipeError(f"{source}: values nested too deeply to be a recipe") from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read and check a recipe file; relative paths in it resolve against its folder."""
    file = Path(path)
    if not file.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc})") from None
    return parse_recipe(text, str(path), file.resolve().parent, overrides)
