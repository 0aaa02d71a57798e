"""Embedded defaults and local paths: where tuneline keeps its data, cache and MLflow store.

Everything local lives under `TUNELINE_HOME` (default `./.tuneline`). The standard
`MLFLOW_TRACKING_URI` overrides the embedded SQLite store; `PREFECT_API_URL` is read by Prefect
itself.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_SEED = 42  # training, shuffling, splits and sampling, when the recipe names no seed


def home() -> Path:
    """The folder holding everything tuneline writes locally; a `TunelineError` naming it when it
    cannot be created or written (a read-only disk, a folder owned by someone else)."""
    path = Path(os.environ.get("TUNELINE_HOME", ".tuneline")).expanduser().resolve()
    _check_writable(str(path))
    return path


@functools.cache
def _check_writable(folder: str) -> None:
    """Create `folder` and write a probe file in it, once per process and folder: a failure here
    is one clear line, instead of a traceback from whichever write comes first."""
    import tempfile

    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        from tasks.core.errors import TunelineError

        reason = exc.strerror or type(exc).__name__
        raise TunelineError(
            f"TUNELINE_HOME {folder} is not writable ({reason}): set TUNELINE_HOME to a folder "
            "tuneline can write (default ./.tuneline in the working directory)"
        ) from None


def cache_dir(kind: str) -> Path:
    path = home() / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def user_cache() -> Path | None:
    """What tuneline keeps between homes for speed alone (never results): `TUNELINE_CACHE_DIR`,
    else `$XDG_CACHE_HOME/tuneline` or `~/.cache/tuneline`; None when it cannot be written."""
    raw = os.environ.get("TUNELINE_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tuneline"
    )
    path = Path(raw).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None


def runs_dir() -> Path:
    path = home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def tracking_uri() -> str:
    """MLflow tracking URI: `MLFLOW_TRACKING_URI` if set, else SQLite under `TUNELINE_HOME`."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{home() / 'mlflow.db'}"


def artifact_root() -> str:
    """Where experiments created by tuneline keep artifacts on the embedded store."""
    path = home() / "mlartifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def uses_embedded_store() -> bool:
    """Whether MLflow is a database opened in this process rather than a tracking server: then
    MLflow would put artifacts in `<cwd>/mlruns`, so tuneline's experiments keep them under
    `TUNELINE_HOME`. Read from the URI, not from whether `MLFLOW_TRACKING_URI` is set:
    `mlflow.set_tracking_uri` sets that variable itself."""
    scheme = tracking_uri().partition("://")[0].lower()
    return scheme not in {"http", "https", "databricks", "databricks-uc", "uc"}


@functools.cache
def tuneline_version() -> str:
    try:
        return metadata.version("tuneline")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@functools.cache
def git_sha() -> str:
    """The commit of the running code, with `-dirty` when the tree has local changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PACKAGE_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PACKAGE_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


@functools.cache
def code_version() -> str:
    """Version + git sha; when the tree is dirty, a hash of the sources so caches stay honest."""
    sha = git_sha()
    if sha.endswith("-dirty") or sha == "unknown":
        digest = hashlib.sha256()
        for folder in ("tasks", "flows", "data_contracts"):
            for file in sorted((PACKAGE_ROOT / folder).rglob("*.py")):
                digest.update(file.read_bytes())
        return f"{tuneline_version()}+src.{digest.hexdigest()[:12]}"
    return f"{tuneline_version()}+g{sha[:12]}"


def work_ahead() -> bool:
    """Whether `tuneline run` fills the next stages' caches in a forked process while the flow
    validates (`flows.ahead`); `TUNELINE_AHEAD=0` keeps every stage on the flow's thread."""
    return os.environ.get("TUNELINE_AHEAD", "1").strip() != "0"


def registry_retry_delays() -> list[float]:
    """Seconds between attempts to register when MLflow does not answer (each attempt also
    retries its HTTP calls, `MLFLOW_HTTP_REQUEST_MAX_RETRIES`). `TUNELINE_REGISTRY_RETRY_DELAYS`
    overrides, e.g. `5,20,60`."""
    raw = os.environ.get("TUNELINE_REGISTRY_RETRY_DELAYS", "10,30,90")
    try:
        return [float(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        return [10.0, 30.0, 90.0]


def checkpoint_dir(recipe_name: str, candidate: str) -> Path:
    """Where a candidate's checkpoints live: stable across re-runs of the same recipe and data."""
    return home() / "checkpoints" / recipe_name / candidate
