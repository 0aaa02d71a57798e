"""Loading curated data: sources to a normalised table, a content fingerprint, the eval split.

Sources are files (JSONL, JSON, CSV, Parquet, TXT), folders and globs of them, saved Hugging Face
datasets and fsspec URLs. Records that cannot be read do not stop loading: they are kept as
`LoadIssue`s (file:line) for the data contract to report. The loaded tables are written once per
fingerprint under the cache, and tasks pass a `DataRef` (paths), never the data.
"""

from __future__ import annotations

import codecs
import glob as globlib
import hashlib
import io
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tasks.core import settings
from tasks.core.atomic import staged
from tasks.core.errors import DataError
from tasks.core.secrets import REFERENCE, redact, remember

Format = Literal["classification", "prompt-completion", "alpaca", "chat", "preference", "text"]

# The canonical fields of each format; a recipe maps its own column names onto these.
FORMAT_FIELDS: dict[str, tuple[str, ...]] = {
    "classification": ("text", "label"),
    "prompt-completion": ("prompt", "completion"),
    "alpaca": ("instruction", "input", "output"),
    "chat": ("messages",),
    "preference": ("prompt", "chosen", "rejected"),
    "text": ("text",),
}
OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {"alpaca": ("input",), "preference": ("prompt",)}
SUFFIXES = {".jsonl", ".json", ".csv", ".parquet", ".txt"}
LOADER_VERSION = "3"
# The longest record read: a JSONL line (bytes), or the text of a CSV row, JSON object or text
# document (characters). Far above any real training example, far below what one runaway record
# (a whole dump on one line) costs the checks and the tokenizer downstream.
MAX_RECORD_BYTES = 8 * 2**20


class EvalSplit(BaseModel):
    """Hold out a share of the training data for evaluation."""

    model_config = ConfigDict(extra="forbid")

    split: float = Field(default=0.1, gt=0.0, lt=0.9, description="Share of rows held out.")


class DataSpec(BaseModel):
    """Where the curated data is and what shape it has."""

    model_config = ConfigDict(extra="forbid")

    train: str = Field(
        description="Training data: file, folder, glob, saved HF dataset or fsspec URL. "
        "Relative paths resolve against the recipe's folder. `${NAME}` reads the environment "
        "variable NAME when the data is loaded: credentials go there "
        "(`https://user:${DATA_TOKEN}@host/train.jsonl`), never inline."
    )
    eval: str | EvalSplit | None = Field(
        default_factory=EvalSplit,
        description="Held-out data: a path like `train`, `{split: 0.1}` to hold out a share, or "
        "null for none (validation only).",
    )
    format: Format = Field(default="classification", description="Record shape of the data.")
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Map canonical field names to the data's column names, e.g. "
        "`{text: review, label: sentiment}`.",
    )
    labels: list[str] | None = Field(
        default=None,
        description="Declared label set for classification (order fixes label ids); "
        "inferred from the training data when absent.",
    )
    max_record_bytes: int = Field(
        default=MAX_RECORD_BYTES,
        gt=0,
        description="Longest record read (a JSONL line in bytes; a CSV row, JSON object or text "
        "document in characters); a longer one is skipped and reported as file:line.",
    )


@dataclass(frozen=True)
class LoadIssue:
    """A record or file that could not be read."""

    where: str
    problem: str
    kind: str = "malformed"


@dataclass(frozen=True)
class DataRef:
    """The loaded data, by reference."""

    fingerprint: str
    format: str
    train_path: str
    eval_path: str
    n_train: int
    n_eval: int
    labels: list[str] = field(default_factory=list)
    issues: list[LoadIssue] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def train(self) -> pd.DataFrame:
        return pd.read_parquet(self.train_path)

    def eval(self) -> pd.DataFrame:
        return pd.read_parquet(self.eval_path)


def is_url(source: str) -> bool:
    return "://" in source and not source.startswith("file://")


def expand_references(text: str, where: str) -> str:
    """`text` with each `${NAME}` replaced by the environment variable NAME, whose value is
    masked from then on; an unset one is a user error naming `where`."""

    def value(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in os.environ:
            raise DataError(
                f"{where}: '{redact(text)}' names ${{{name}}}, which is not set; set {name} in "
                "the environment tuneline runs in (the worker's, for deployments)"
            )
        remember(os.environ[name])
        return os.environ[name]

    return REFERENCE.sub(value, text)


def expand_source(source: str) -> list[str]:
    """The files behind a source, sorted; a saved HF dataset folder stays one entry. `${NAME}`
    references in the source are read from the environment here, when the data is read, so
    that the recipe Prefect stores holds the reference only."""
    source = expand_references(source, "data")
    if is_url(source):
        import fsspec

        fs, _, paths = fsspec.get_fs_token_paths(source)
        found: list[str] = []
        for path in paths:
            if fs.isdir(path):
                found += [p for p in fs.find(path) if Path(p).suffix in SUFFIXES]
            else:
                found.append(path)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        return sorted(f"{protocol}://{p}" if "://" not in p else p for p in found)
    path = Path(source.removeprefix("file://"))
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return [str(path)]
        files = [p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES]
        # Hidden and underscore names (`.git/`, `_SUCCESS`, `_tmp/`) are skipped inside the data
        # folder only: the folders above it (`/data/_curated/`) are the user's choice of place.
        files = [
            p
            for p in files
            if not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        ]
        return sorted(str(p) for p in files)
    if path.is_file():
        return [str(path)]
    return sorted(p for p in globlib.glob(str(path), recursive=True) if Path(p).is_file())


def _read_bytes(source: str) -> bytes:
    if is_url(source):
        import fsspec

        with fsspec.open(source, "rb") as handle:
            return handle.read()
    return Path(source).read_bytes()


def _decode(raw: bytes, name: str, issues: list[LoadIssue]) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        issues.append(LoadIssue(f"{name}:{line}", "not valid UTF-8 (bytes replaced)", "encoding"))
        return raw.decode("utf-8", errors="replace")


# JSONL files from this size up are read by Arrow's JSON reader (about three times faster than
# orjson and a DataFrame built from dicts) in a child process: that reader once crashed the process
# (segfault) on fuzzed input, which a loader of data that lands unattended cannot afford.
ARROW_JSONL_BYTES = 8 * 2**20
_ARROW_READER = """
import sys
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.json as pj
source = pa.memory_map(sys.argv[1])
if source.read(3) != b"\\xef\\xbb\\xbf":  # a UTF-8 byte order mark is skipped
    source.seek(0)
table = pj.read_json(source)
with ipc.new_file(sys.argv[2], table.schema) as sink:
    sink.write_table(table)
"""


def _flat_type(kind: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
    )


def _read_jsonl_arrow(path: str, raw: bytes, name: str) -> pd.DataFrame | None:
    """A local JSONL file read by Arrow in a child process; None unless that gave exactly one flat
    record (text, numbers, booleans) per line, in which case the line-by-line reader takes over
    and reports what is wrong where."""
    import subprocess
    import sys
    import tempfile

    import pyarrow as pa
    import pyarrow.ipc

    lines = raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1)
    with tempfile.TemporaryDirectory(prefix="tuneline-jsonl-") as tmp:
        table_file = Path(tmp) / "table.arrow"
        try:
            child = subprocess.run(
                [sys.executable, "-c", _ARROW_READER, path, str(table_file)],
                capture_output=True,
                timeout=3600,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if child.returncode != 0 or not table_file.is_file():
            return None  # a parse error (or a crash): the careful reader says where
        with pa.OSFile(str(table_file)) as handle:
            table = pyarrow.ipc.open_file(handle).read_all()
    if table.num_rows != lines or not all(_flat_type(f.type) for f in table.schema):
        return None  # blank lines (numbering), nested values or inferred dates: careful reader
    frame = table.to_pandas()
    frame["_where"] = [f"{name}:{n}" for n in range(1, len(frame) + 1)]
    return frame


def _read_jsonl(text: str, name: str, issues: list[LoadIssue]) -> pd.DataFrame:
    """Line by line (orjson), so a malformed line is reported as file:line and skipped."""
    import orjson

    # Lines end at "\n" only: `str.splitlines` would also cut at U+2028, form feeds and the
    # like, which JSON strings may hold unescaped (and would disagree with the line numbers the
    # other readers give).
    all_lines = text.split("\n")
    if all_lines[-1] == "":
        all_lines.pop()
    if all(line.strip() for line in all_lines):
        # Fast path: every line non-blank, so one parse of the lines as a JSON array keeps the
        # line numbers; any bad line sends the file through the line-by-line path below.
        try:
            parsed = orjson.loads("[" + ",".join(all_lines) + "]")
        except orjson.JSONDecodeError:
            parsed = None
        if (
            parsed is not None
            and len(parsed) == len(all_lines)
            and all(isinstance(r, dict) for r in parsed)
        ):
            frame = pd.DataFrame.from_records(parsed) if parsed else pd.DataFrame()
            frame["_where"] = [f"{name}:{n}" for n in range(1, len(parsed) + 1)]
            return frame
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for number, line in enumerate(all_lines, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            reason = str(exc).split(":")[0]
            issues.append(LoadIssue(f"{name}:{number}", f"malformed JSON ({reason})"))
            continue
        if not isinstance(record, dict):
            issues.append(LoadIssue(f"{name}:{number}", "record is not a JSON object"))
            continue
        rows.append(record)
        lines.append(number)
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    frame["_where"] = [f"{name}:{n}" for n in lines]
    return frame


def _drop_long_lines(raw: bytes, limit: int, name: str, issues: list[LoadIssue]) -> bytes:
    """`raw` with every line longer than `limit` bytes emptied (its newline kept, so the line
    numbers stay) and reported; one vectorised pass over the newlines, no copy unless needed."""
    if len(raw) <= limit:
        return raw
    import numpy as np

    ends = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 0x0A)
    ends = np.append(ends, len(raw))
    starts = np.concatenate([[0], ends[:-1] + 1])
    long = np.flatnonzero(ends - starts > limit)
    if not len(long):
        return raw
    kept, position = [], 0
    for index in long.tolist():
        size = int(ends[index] - starts[index])
        issues.append(
            LoadIssue(
                f"{name}:{index + 1}",
                f"record of {size:,} bytes is longer than data.max_record_bytes ({limit:,}); "
                "skipped",
            )
        )
        kept.append(raw[position : int(starts[index])])
        position = int(ends[index])
    kept.append(raw[position:])
    return b"".join(kept)


def _drop_long_records(frame: pd.DataFrame, limit: int, issues: list[LoadIssue]) -> pd.DataFrame:
    """`frame` without the records whose text is longer than `limit` characters (reported by
    their `_where`); only looked at when the file itself is longer than the limit."""
    columns = [c for c in frame.columns if c != "_where" and _may_hold_text(frame[c])]
    if not columns or not len(frame):
        return frame
    sizes = sum(_text_lengths(frame[c]) for c in columns)
    long = sizes > limit
    if not long.any():
        return frame
    for where, size in zip(frame.loc[long, "_where"], sizes[long], strict=True):
        issues.append(
            LoadIssue(
                where,
                f"record of {int(size):,} characters is longer than data.max_record_bytes "
                f"({limit:,}); skipped",
            )
        )
    return frame[~long].reset_index(drop=True)


def _may_hold_text(column: pd.Series) -> bool:
    return column.dtype == object or isinstance(column.dtype, pd.StringDtype)


def _text_lengths(column: pd.Series) -> pd.Series:
    if isinstance(column.dtype, pd.StringDtype):
        return column.str.len().fillna(0).astype("int64")
    return column.map(lambda v: len(v) if isinstance(v, str) else 0).astype("int64")


def _read_file(
    source: str, issues: list[LoadIssue], max_record_bytes: int = MAX_RECORD_BYTES
) -> pd.DataFrame:
    suffix = Path(source.split("?")[0]).suffix.lower()
    name = redact(source) if is_url(source) else os.path.relpath(source)
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(io.BytesIO(_read_bytes(source)))
        except Exception as exc:  # pyarrow raises many types for corrupt files
            issues.append(LoadIssue(name, f"unreadable Parquet ({exc})"))
            return pd.DataFrame()
        frame["_where"] = [f"{name}:row {i + 1}" for i in range(len(frame))]
        return frame
    # Many Windows tools open UTF-8 files with a byte order mark; it is not part of the data.
    raw = _read_bytes(source).removeprefix(codecs.BOM_UTF8)
    known = len(issues)
    if suffix == ".jsonl":
        raw = _drop_long_lines(raw, max_record_bytes, name, issues)
        text = _decode(raw, name, issues)
        if len(raw) >= ARROW_JSONL_BYTES and len(issues) == known and not is_url(source):
            frame = _read_jsonl_arrow(source, raw, name)
            if frame is not None:
                return frame
        return _read_jsonl(text, name, issues)
    frame = _read_text_file(suffix, _decode(raw, name, issues), name, issues)
    if len(raw) > max_record_bytes:
        frame = _drop_long_records(frame, max_record_bytes, issues)
    return frame


def _read_text_file(suffix: str, text: str, name: str, issues: list[LoadIssue]) -> pd.DataFrame:
    """A JSON, CSV or TXT file's records."""
    if suffix == ".json":
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            issues.append(LoadIssue(f"{name}:{exc.lineno}", f"malformed JSON ({exc.msg})"))
            return pd.DataFrame()
        if isinstance(payload, dict) and isinstance(payload.get("data"), list):
            payload = payload["data"]
        if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
            issues.append(LoadIssue(name, "JSON file must hold a list of objects"))
            return pd.DataFrame()
        frame = pd.DataFrame.from_records(payload)
        frame["_where"] = [f"{name}:record {i + 1}" for i in range(len(frame))]
        return frame
    if suffix == ".csv":
        try:
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, ValueError) as exc:
            issues.append(LoadIssue(name, f"malformed CSV ({exc})"))
            return pd.DataFrame()
        frame["_where"] = [f"{name}:{i + 2}" for i in range(len(frame))]
        return frame
    if suffix == ".txt":
        # A text file is one document per blank-line-separated paragraph.
        docs = [d.strip() for d in text.split("\n\n") if d.strip()]
        return pd.DataFrame(
            {"text": docs, "_where": [f"{name}:doc {i + 1}" for i in range(len(docs))]}
        )
    issues.append(LoadIssue(name, f"unsupported file type '{suffix}'"))
    return pd.DataFrame()


def read_table(
    source: str, max_record_bytes: int = MAX_RECORD_BYTES
) -> tuple[pd.DataFrame, list[LoadIssue]]:
    """Read every file behind `source` into one table; returns (table, issues)."""
    files = expand_source(source)
    if not files:
        raise DataError(
            f"data: nothing found at '{source}'; check the path in the recipe's data block "
            f"(supported: {', '.join(sorted(SUFFIXES))}, folders, globs, saved HF datasets)"
        )
    issues: list[LoadIssue] = []
    frames: list[pd.DataFrame] = []
    for file in files:
        if not is_url(file) and Path(file).is_dir():
            frames.append(_read_saved_dataset(file))
        else:
            frames.append(_read_file(file, issues, max_record_bytes))
    frames = [f for f in frames if len(f.columns)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"_where": []})
    return table, issues


def read_source(source: str) -> tuple[pd.DataFrame, list[LoadIssue], str]:
    """`read_table` and the content hash (`source_digest`) of the same files."""
    table, issues = read_table(source)
    return table, issues, source_digest(source)


def source_digest(source: str) -> str:
    """The content hash of every file behind `source`, without parsing anything: enough to find
    a cached load."""
    digest = hashlib.sha256()
    for file in expand_source(source):
        if not is_url(file) and Path(file).is_dir():
            for part in sorted(Path(file).rglob("*")):
                if part.is_file():
                    digest.update(part.read_bytes())
            continue
        digest.update(Path(file).name.encode())
        digest.update(_read_bytes(file))
    return digest.hexdigest()


def _read_saved_dataset(folder: str) -> pd.DataFrame:
    import datasets

    loaded = datasets.load_from_disk(folder)
    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    frame = loaded.to_pandas()
    frame["_where"] = [f"{folder}:row {i + 1}" for i in range(len(frame))]
    return frame


def normalise(
    table: pd.DataFrame, spec: DataSpec, issues: list[LoadIssue] | None = None
) -> pd.DataFrame:
    """Rename mapped columns to canonical names; keep canonical fields and `_where`. A text field
    holding something other than a string becomes missing and is reported as malformed."""
    table = table.rename(columns={src: dst for dst, src in spec.fields.items()})
    wanted = list(FORMAT_FIELDS[spec.format])
    if spec.format == "preference" and "prompt" not in table.columns:
        wanted.remove("prompt")
    for name in wanted:
        if name not in table.columns:
            table[name] = None
    out = table[[*wanted, "_where"]].copy()
    if spec.format == "classification" and pd.api.types.infer_dtype(
        out["label"], skipna=True
    ) not in ("string", "empty"):
        out["label"] = out["label"].map(_label_str)
    if spec.format == "chat":
        out["messages"] = out["messages"].map(_plain_messages)
    for name in wanted:
        if name in ("label", "messages"):
            continue
        column = out[name]
        if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
            continue  # all text (the common case): no per-row look needed
        wrong = column.map(lambda v: v is not None and not isinstance(v, str) and not _missing(v))
        if wrong.any():
            for where, value in out.loc[wrong, ["_where", name]].itertuples(index=False):
                if issues is not None:
                    issues.append(
                        LoadIssue(where, f"field '{name}' is {type(value).__name__}, not text")
                    )
            out[name] = column.where(~wrong, None)
    return out.reset_index(drop=True)


def _missing(value: Any) -> bool:
    return isinstance(value, float) and pd.isna(value)


def _plain_messages(value: Any) -> Any:
    """Arrow hands back arrays of dicts; training and checks want a list of plain dicts."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [dict(m) if isinstance(m, dict) else m for m in value]
    return value


def _label_str(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def split_eval(
    table: pd.DataFrame, share: float, seed: int, stratify: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    strata = None
    if stratify and stratify in table and table[stratify].notna().all():
        counts = table[stratify].value_counts()
        if len(counts) > 1 and counts.min() >= 2:
            strata = table[stratify]
    train, held = train_test_split(table, test_size=share, random_state=seed, stratify=strata)
    return train.reset_index(drop=True), held.reset_index(drop=True)


def _fingerprint(spec: DataSpec, train_hash: str, split_key: str) -> str:
    payload = [
        train_hash,
        split_key,
        spec.format,
        spec.fields,
        spec.labels,
        spec.max_record_bytes,
        LOADER_VERSION,
    ]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:20]


def _split_key(spec: DataSpec, seed: int, eval_hash: str | None) -> str:
    if isinstance(spec.eval, str):
        return f"eval={eval_hash}"
    if spec.eval is None:
        return "no-eval"
    return f"split={spec.eval.split},seed={seed}"


def fingerprint_of(spec: DataSpec, seed: int = settings.DEFAULT_SEED) -> str:
    """The data fingerprint: the sources' bytes (hashed, not parsed) and the loading settings."""
    eval_hash = source_digest(spec.eval) if isinstance(spec.eval, str) else None
    return _fingerprint(spec, source_digest(spec.train), _split_key(spec, seed, eval_hash))


def cached(
    spec: DataSpec, seed: int = settings.DEFAULT_SEED, fingerprint: str | None = None
) -> DataRef | None:
    """The load of these exact bytes and settings done before; None when there is none."""
    if fingerprint is None:
        if not expand_source(spec.train):
            return None
        fingerprint = fingerprint_of(spec, seed)
    target = settings.cache_dir("data") / fingerprint
    meta_file = target / "meta.json"
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text())
    if "n_train" not in meta:  # written by an older loader
        return None
    return DataRef(
        fingerprint=fingerprint,
        format=spec.format,
        train_path=str(target / "train.parquet"),
        eval_path=str(target / "eval.parquet"),
        n_train=int(meta["n_train"]),
        n_eval=int(meta["n_eval"]),
        labels=list(meta["labels"]),
        issues=[LoadIssue(**i) for i in meta["issues"]],
        sources=[spec.train] + ([spec.eval] if isinstance(spec.eval, str) else []),
    )


def load(spec: DataSpec, seed: int = settings.DEFAULT_SEED) -> DataRef:
    """Read, normalise, split and cache the data named by `spec` (unchanged sources come back
    from the cache without being parsed again; the sources are hashed once either way)."""
    fingerprint = fingerprint_of(spec, seed) if expand_source(spec.train) else ""
    found = cached(spec, seed, fingerprint) if fingerprint else None
    if found is not None:
        return found
    # a missing source fails here, clearly
    train_raw, issues = read_table(spec.train, spec.max_record_bytes)
    eval_raw = None
    if isinstance(spec.eval, str):
        eval_raw, eval_issues = read_table(spec.eval, spec.max_record_bytes)
        issues += eval_issues
    train = normalise(train_raw, spec, issues)
    if eval_raw is not None:
        held = normalise(eval_raw, spec, issues)
    elif spec.eval is None:
        held = train.iloc[0:0].copy()
    elif isinstance(spec.eval, EvalSplit):
        stratify = "label" if spec.format == "classification" else None
        train, held = split_eval(train, spec.eval.split, seed, stratify)
    labels = list(spec.labels) if spec.labels else []
    if spec.format == "classification" and not labels:
        labels = sorted({str(v) for v in train["label"].dropna()})
    target = settings.cache_dir("data") / fingerprint
    if not target.exists():
        with staged(target, replace=False) as folder:  # another run may finish it first
            train.to_parquet(folder / "train.parquet", index=False)
            held.to_parquet(folder / "eval.parquet", index=False)
            meta = {
                "issues": [asdict(i) for i in issues],
                "labels": labels,
                "n_train": len(train),
                "n_eval": len(held),
            }
            (folder / "meta.json").write_text(json.dumps(meta))
    return DataRef(
        fingerprint=fingerprint,
        format=spec.format,
        train_path=str(target / "train.parquet"),
        eval_path=str(target / "eval.parquet"),
        n_train=len(train),
        n_eval=len(held),
        labels=labels,
        issues=issues,
        sources=[spec.train] + ([spec.eval] if isinstance(spec.eval, str) else []),
    )


def check_sources(spec: DataSpec) -> None:
    """Fail fast, before any flow starts, when a local data path names nothing."""
    for key in ("train", "eval"):
        source = getattr(spec, key)
        if isinstance(source, str) and not is_url(source) and not expand_source(source):
            raise DataError(
                f"data.{key}: nothing found at '{source}'; check the path (relative paths "
                "resolve against the recipe's folder)"
            )
