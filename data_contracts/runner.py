"""Running a contract: one Great Expectations suite per split for the checks GX has expectations
for, plain functions (same `CheckResult` shape) for the rest. Checks that cost more than linear
time per row (MinHash near-duplicates, n-gram diversity, token lengths) look at a uniform sample of
at most `sample_rows` rows and say so in their message."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from data_contracts.contract import (
    ChatStructure,
    CheckConfig,
    Contract,
    DistinctNgrams,
    LengthBias,
    MaxShare,
    MethodMinimum,
    MinRows,
    MinShare,
    NearDuplicates,
    TextLength,
    TokenLength,
)
from data_contracts.report import CheckResult, Report

TEXT = "_text"

# Every character Python counts as whitespace (`str.isspace`, `\s` in `re`) apart from the blank,
# written so that Python's re and RE2 (Arrow) read it alike: 2-digit escapes, literal characters
# above U+00FF (RE2 has no `\u`, Python's re no `\x{...}`).
SPACE_NOT_BLANK = (
    "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f\\x85\\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)
SPACE = " " + SPACE_NOT_BLANK
WHERE = "_where"


@dataclass
class ContractData:
    """What a contract looks at: the normalised tables, the loader's issues, the label set."""

    format: str
    train: pd.DataFrame
    eval: pd.DataFrame
    required: list[str]
    text_fields: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    issues: list[Any] = field(default_factory=list)  # tasks.data.load.LoadIssue-shaped
    method: str | None = None
    count_tokens: Callable[[list[str]], list[int]] | None = None
    max_length: int | None = None
    # what the promotion gate needs from the eval set (set by tasks.validation.contract from the recipe's
    # gate): the fewest eval rows its test can show `gate_target` on, and how many rows of the
    # eval set the gate metric is measured on (causal LMs generate from the first rows only)
    eval_rows_needed: int | None = None
    eval_rows_used: int | None = None
    gate_target: str = ""
    # what the checks of one run share (the train sample, MinHashes and their LSH index), and the
    # GX runs behind its report: kept with the run, never between runs
    shared: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    gx_runs: list[tuple[str, Any]] = field(default_factory=list, repr=False, compare=False)


# -- the text a row is judged by -----------------------------------------------------------------


def _join(*parts: pd.Series) -> pd.Series:
    out = parts[0].fillna("").astype(str)
    for part in parts[1:]:
        out = out + "\n" + part.fillna("").astype(str)
    return out


def _chat_text(messages: Any) -> str:
    if not isinstance(messages, list | tuple) and not hasattr(messages, "tolist"):
        return ""
    items = messages.tolist() if hasattr(messages, "tolist") else messages
    return "\n".join(str(m.get("content", "")) for m in items if isinstance(m, dict))


def row_text(frame: pd.DataFrame, data_format: str) -> pd.Series:
    """One string per row: what duplicates, lengths and diversity are measured on."""
    if not len(frame):
        return pd.Series([], dtype=object)
    if data_format in ("classification", "text"):
        return frame["text"]
    if data_format == "prompt-completion":
        return _join(frame["prompt"], frame["completion"])
    if data_format == "alpaca":
        return _join(frame["instruction"], frame["input"], frame["output"])
    if data_format == "chat":
        return frame["messages"].map(_chat_text)
    if data_format == "preference":
        prompt = frame["prompt"] if "prompt" in frame else pd.Series("", index=frame.index)
        return _join(prompt, frame["chosen"])
    return frame["text"].astype(object).where(frame["text"].notna(), None)


def _text_column(data_format: str) -> str:
    """The column GX judges row text on: the data's own `text` column where the row text is that
    column (GX fingerprints every column it is given, so a copy would be hashed twice)."""
    return "text" if data_format in ("classification", "text") else TEXT


def _sample(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=0)


def _train_sample(data: ContractData, rows: int) -> pd.DataFrame:
    """The same uniform train sample for every sampled check of one run."""
    key = ("sample", rows)
    if key not in data.shared:
        data.shared[key] = _sample(data.train.dropna(subset=[TEXT]), rows)
    return data.shared[key]


def _sample_note(frame: pd.DataFrame, sampled: pd.DataFrame) -> str:
    return (
        "" if len(sampled) == len(frame) else f" (estimated on a sample of {len(sampled):,} rows)"
    )


# -- Great Expectations part ---------------------------------------------------------------------


def _gx_expectations(name: str, cfg: CheckConfig, data: ContractData, split: str) -> list[Any]:
    import great_expectations as gx

    meta = {"check": name}
    if name in ("row_count", "row_count_recommended") and split == "train":
        assert isinstance(cfg, MinRows)
        return [gx.expectations.ExpectTableRowCountToBeBetween(min_value=cfg.min, meta=meta)]
    if name == "required_fields":
        return [
            gx.expectations.ExpectColumnValuesToNotBeNull(column=col, meta=meta)
            for col in data.required
        ]
    if name == "empty_text":
        return [
            # "holds a character that is not whitespace", spelled so that pandas can hand it to
            # Arrow (`\s` or `$` send every row through Python's re, several times slower)
            gx.expectations.ExpectColumnValuesToMatchRegex(
                column=col, regex=f"[^{SPACE}]", meta=meta
            )
            for col in data.text_fields
        ]
    if name == "label_in_set" and data.format == "classification" and data.labels:
        return [
            gx.expectations.ExpectColumnValuesToBeInSet(
                column="label", value_set=list(data.labels), meta=meta
            )
        ]
    if name == "text_length" and split == "train":
        assert isinstance(cfg, TextLength)
        return [
            gx.expectations.ExpectColumnValueLengthsToBeBetween(
                column=_text_column(data.format),
                min_value=cfg.min_chars,
                max_value=cfg.max_chars,
                meta=meta,
            )
        ]
    if name == "exact_duplicates" and split == "train":
        return [
            gx.expectations.ExpectColumnValuesToBeUnique(
                column=_text_column(data.format), meta=meta
            )
        ]
    return []


ROW = "_row"


def _gx_frame(frame: pd.DataFrame, expectations: list[Any]) -> pd.DataFrame:
    """Only the columns the expectations read, plus an integer row id: GX fingerprints the whole
    frame it is given, and hashing integers is far cheaper than hashing `file:line` strings."""
    columns = {e.column for e in expectations if getattr(e, "column", None)}
    out = frame[[c for c in frame.columns if c in columns]].copy()
    out[ROW] = range(len(frame))
    return out


def _run_gx(
    frame: pd.DataFrame, expectations: list[Any], split: str, runs: list[tuple[str, Any]]
) -> list[Any]:
    """Run the expectations on `frame` with an ephemeral GX context; the context is added to
    `runs` (for Data Docs)."""
    if not expectations:
        return []
    wheres = frame[WHERE]  # looked up for the few example rows only
    frame = _gx_frame(frame, expectations)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("tuneline")
        .add_dataframe_asset(f"curated_{split}")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=f"contract_{split}"))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"contract_{split}", data=batch, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={
            "result_format": "SUMMARY",
            "unexpected_index_column_names": [ROW],
            "partial_unexpected_count": 5,
        },
    )
    runs.append((split, context))
    for item in result.results:  # row ids back to file:line for the report
        for entry in item.result.get("partial_unexpected_index_list") or []:
            entry[WHERE] = wheres.iloc[int(entry.pop(ROW))]
    return list(result.results)


def _examples(result: dict[str, Any]) -> list[str]:
    """`file:line: field value` for the rows GX names (`field missing` for a null)."""
    out = []
    for item in result.get("partial_unexpected_index_list") or []:
        where = item.get(WHERE, "?")
        column, value = next(((k, v) for k, v in item.items() if k != WHERE), ("value", None))
        field = "text" if column == TEXT else column
        missing = value is None or (isinstance(value, float) and value != value)  # None or NaN
        shown = "missing" if missing else repr(str(value)[:100])
        out.append(f"{where}: {field} {shown}")
    return out


GX_WORDS = {
    "required_fields": "rows with a missing required field",
    "empty_text": "rows with an empty or whitespace-only text field",
    "label_in_set": "rows whose label is outside the declared label set",
    "text_length": "rows with text outside the length bounds",
    "exact_duplicates": "rows whose text appears more than once in train",
}


def _interpret_gx(name: str, cfg: CheckConfig, results: list[Any], n_rows: int) -> CheckResult:
    if name in ("row_count", "row_count_recommended"):
        assert isinstance(cfg, MinRows)
        observed = results[0].result.get("observed_value")
        ok = bool(results[0].success)
        msg = f"{observed} training rows, need at least {cfg.min}"
        if name == "row_count_recommended" and not ok:
            msg += " to expect a gain from fine-tuning (about 1,000 for solid results)"
        return CheckResult(name, cfg.severity, ok, observed, cfg.min, msg, [], "gx")
    unexpected = sum(int(r.result.get("unexpected_count") or 0) for r in results)
    examples = [e for r in results for e in _examples(r.result)]
    share = unexpected / n_rows if n_rows else 0.0
    if isinstance(cfg, MaxShare):
        ok = share <= cfg.max_share
        threshold: Any = cfg.max_share
    else:
        ok = all(bool(r.success) for r in results)
        threshold = None
    msg = f"{unexpected} {GX_WORDS.get(name, 'unexpected rows')} ({share:.1%})"
    if isinstance(cfg, TextLength):
        threshold = [cfg.min_chars, cfg.max_chars]
        msg += f", bounds {cfg.min_chars}..{cfg.max_chars} characters"
    return CheckResult(name, cfg.severity, ok, round(share, 6), threshold, msg, examples, "gx")


# -- plain checks (no GX expectation fits) -------------------------------------------------------


def _issue_check(name: str, kinds: tuple[str, ...], what: str) -> Callable[..., CheckResult]:
    def check(cfg: CheckConfig, data: ContractData) -> CheckResult:
        assert isinstance(cfg, MaxShare)
        bad = [i for i in data.issues if getattr(i, "kind", "malformed") in kinds]
        total = len(data.train) + len(data.eval) + len(bad)
        share = len(bad) / total if total else 0.0
        return CheckResult(
            name,
            cfg.severity,
            share <= cfg.max_share,
            round(share, 6),
            cfg.max_share,
            f"{len(bad)} {what} ({share:.1%})",
            [f"{i.where}: {i.problem}" for i in bad[:5]],
        )

    return check


def _method_minimum(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    assert isinstance(cfg, MethodMinimum)
    if not data.method or data.method not in cfg.minimums:
        return None
    need = cfg.minimums[data.method]
    ok = len(data.train) >= need
    return CheckResult(
        "method_minimum",
        cfg.severity,
        ok,
        len(data.train),
        need,
        f"{len(data.train)} training rows; method '{data.method}' wants at least {need}",
    )


def _conflicting_labels(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    if data.format != "classification":
        return None
    assert isinstance(cfg, MaxShare)
    frame = data.train.dropna(subset=["text", "label"])
    total = len(frame)
    frame = frame[frame["text"].duplicated(keep=False)]  # only repeated texts can conflict
    per_text = frame.groupby("text", sort=False)["label"].nunique()
    conflicted = per_text[per_text > 1].index
    rows = frame[frame["text"].isin(conflicted)]
    share = len(rows) / total if total else 0.0
    examples = [
        f"{w}: {str(t)[:80]!r} labelled {lab!r}"
        for w, t, lab in rows[[WHERE, "text", "label"]].head(5).itertuples(index=False)
    ]
    return CheckResult(
        "conflicting_labels",
        cfg.severity,
        share <= cfg.max_share,
        round(share, 6),
        cfg.max_share,
        f"{len(conflicted)} texts carry more than one label ({len(rows)} rows, {share:.1%})",
        examples,
    )


def _label_balance(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    if data.format != "classification":
        return None
    assert isinstance(cfg, MinShare)
    counts = data.train["label"].value_counts()
    labels = data.labels or list(counts.index)
    shares = {lab: float(counts.get(lab, 0)) / max(len(data.train), 1) for lab in labels}
    smallest = min(shares, key=lambda k: shares[k]) if shares else None
    low = shares.get(smallest, 0.0) if smallest is not None else 0.0
    ok = low >= cfg.min_share and len(labels) >= 2
    msg = f"smallest class '{smallest}' is {low:.1%} of train"
    if len(labels) < 2:
        msg = f"only {len(labels)} label(s) in train; classification needs at least two"
    return CheckResult(
        "label_balance",
        cfg.severity,
        ok,
        round(low, 6),
        cfg.min_share,
        msg,
        [f"{k}: {v:.1%}" for k, v in sorted(shares.items())],
    )


def _without_format_characters(text: str) -> str:
    """`text` without invisible format characters (Unicode category Cf: zero-width space and
    joiners, the byte order mark, the soft hyphen, bidi marks...). Looks at each distinct
    character once: a table of every Cf character takes most of a second to build."""
    hidden = {ord(c): None for c in set(text) if unicodedata.category(c) == "Cf"}
    return text.translate(hidden) if hidden else text


def _canonical(text: str) -> str:
    """The form two texts are compared in: without format characters, NFKC-normalised (composed
    accents, compatibility forms such as full-width letters and ligatures) and case folded. An
    ASCII text is its own lower case: it holds no format character and NFKC leaves it alone."""
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKC", _without_format_characters(text))
    return unicodedata.normalize("NFKC", text.casefold())  # folding may undo the composition


def _label_count(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    """A classifier needs at least two labels in its training rows, declared or not: trained on
    one, it can only ever answer that one (and scores perfectly on an eval set of that label)."""
    if data.format != "classification" or "label" not in data.train:
        return None
    present = sorted(str(v) for v in data.train["label"].dropna().unique())
    ok = len(present) >= 2
    declared = f"; declared: {', '.join(data.labels)}" if data.labels else ""
    msg = (
        f"{len(present)} labels in train"
        if ok
        else f"train has {len(present)} label{'' if len(present) == 1 else 's'}"
        f"{' (' + repr(present[0]) + ')' if present else ''}{declared}; a classifier needs rows "
        "of at least two labels"
    )
    return CheckResult("label_count", cfg.severity, ok, len(present), 2, msg, present[:5])


def _eval_size(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    """Whether the eval set is large enough for the promotion gate to ever show the gain it is
    asked to detect (see tasks.core.promotion.rows_needed)."""
    if data.eval_rows_needed is None:
        return None
    have = len(data.eval) if data.eval_rows_used is None else data.eval_rows_used
    need = data.eval_rows_needed
    rows = f"{have:,} row{'' if have == 1 else 's'}"
    used = "" if have == len(data.eval) else f" (of {len(data.eval):,}, evaluate.generation_rows)"
    ok = have >= need
    if ok:
        msg = f"eval has {rows}{used}; about {need:,} are needed {data.gate_target}"
    else:
        msg = (
            f"eval has {rows}{used}; about {need:,} are needed {data.gate_target}: add eval "
            "rows, or set register.gate.detect_gain to the larger gain this eval set can show"
        )
    return CheckResult("eval_size", cfg.severity, ok, have, need, msg)


def _norm(value: Any) -> str:
    return " ".join(_canonical(str(value)).split())


# A text whose whitespace is not already single spaces between words.
_UNTIDY = rf"[{SPACE_NOT_BLANK}]|^ | $|  "


def _normalised(texts: pd.Series) -> Any:
    """`_norm` of every text, as an Arrow array: lower-cased by Arrow, the few texts that are not
    pure ASCII made `_canonical` in Python, whitespace collapsed only in the texts that need it
    (splitting and joining every text costs several times more)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    original = pa.array(texts, type=pa.large_string(), from_pandas=True)  # NaN: null
    if isinstance(original, pa.ChunkedArray):  # pandas' Arrow-backed strings come in chunks,
        original = original.combine_chunks()  # which `replace_with_mask` does not take
    lowered = pc.utf8_lower(original)
    unusual = pc.fill_null(pc.invert(pc.string_is_ascii(original)), False)
    if pc.any(unusual).as_py():
        folded = [_canonical(t) for t in pc.filter(original, unusual).to_pylist()]
        lowered = pc.replace_with_mask(lowered, unusual, pa.array(folded, type=original.type))
    untidy = pc.fill_null(pc.match_substring_regex(lowered, _UNTIDY), False)
    if pc.any(untidy).as_py():
        untidy_texts = pc.utf8_trim_whitespace(pc.filter(lowered, untidy))
        tidied = pc.binary_join(
            pc.utf8_split_whitespace(untidy_texts), pa.scalar(" ", original.type)
        )
        lowered = pc.replace_with_mask(lowered, untidy, tidied)
    return lowered


def _contamination_exact(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    if not len(data.eval) or not len(data.train):
        return None
    assert isinstance(cfg, MaxShare)
    import pyarrow.compute as pc

    train_keys = _normalised(data.train[TEXT])
    hit = pc.fill_null(pc.is_in(_normalised(data.eval[TEXT]), value_set=train_keys), False)
    leaked = data.eval[hit.to_numpy(zero_copy_only=False)]
    share = len(leaked) / len(data.eval)
    examples = [
        f"{w}: {str(t)[:100]!r}" for w, t in leaked[[WHERE, TEXT]].head(5).itertuples(index=False)
    ]
    return CheckResult(
        "contamination_exact",
        cfg.severity,
        share <= cfg.max_share,
        round(share, 6),
        cfg.max_share,
        f"{len(leaked)} eval rows also appear in train ({share:.1%})",
        examples,
    )


_WORD = re.compile(r"\w+")


def _words(text: Any) -> list[str]:
    """The words of a text in `_canonical` form, so that an accent written decomposed or a
    zero-width space inside a word does not change the shingles a near-duplicate is found by."""
    return _WORD.findall(_canonical(str(text))) if text is not None else []


def _hash32(data: bytes) -> int:
    import xxhash

    return int(xxhash.xxh32_intdigest(data))


def _shingles(text: Any, size: int) -> set[bytes]:
    words = _words(text)
    if len(words) < size:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + size]).encode() for i in range(len(words) - size + 1)}


def _fmix32(values: Any) -> Any:
    """The MurmurHash3 finalizer on uint32 arrays: datasketch's pre-mix for its affine32 scheme."""
    import numpy as np

    u32 = np.uint32
    values = values ^ (values >> u32(16))
    values = values * u32(0x85EBCA6B)
    values = values ^ (values >> u32(13))
    values = values * u32(0xC2B2AE35)
    return values ^ (values >> u32(16))


def _minhashes(texts: list[Any], cfg: NearDuplicates) -> list[Any]:
    """datasketch MinHashes (affine32 scheme, xxhash instead of its default sha1) of each text's
    word shingles. The permutations run on all texts' shingle hashes at once in numpy instead of
    one `MinHash.update_batch` per text; the values are the same bit for bit (a unit test holds
    them against `MinHash.bulk`)."""
    import numpy as np
    from datasketch import LeanMinHash, MinHash

    template = MinHash(num_perm=cfg.num_perm, hashfunc=_hash32, scheme="affine32")
    mult, add = (np.asarray(p, dtype=np.uint32) for p in template.permutations)
    sets = [_shingles(text, cfg.shingle) for text in texts]
    counts = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
    hashed = np.fromiter(
        (_hash32(shingle) for shingles in sets for shingle in shingles),
        dtype=np.uint32,
        count=int(counts.sum()),
    )
    hashed = _fmix32(hashed)
    starts = np.concatenate([[0], np.cumsum(counts)])
    values = np.empty((len(sets), cfg.num_perm), dtype=np.uint32)
    step = 1024  # texts per block: a block's (shingles x permutations) matrix stays small
    for lo in range(0, len(sets), step):
        hi = min(lo + step, len(sets))
        block = hashed[starts[lo] : starts[hi], None] * mult + add  # uint32 wraps: mod 2^32
        values[lo:hi] = np.minimum.reduceat(block, starts[lo:hi] - starts[lo], axis=0)
    return [LeanMinHash(seed=template.seed, hashvalues=v, scheme="affine32") for v in values]


def _train_index(
    data: ContractData, frame: pd.DataFrame, cfg: NearDuplicates
) -> tuple[list[Any], Any]:
    """MinHashes of the train sample and their LSH index, shared by the near-duplicate and the
    near-contamination checks when their settings agree."""
    from datasketch import MinHashLSH

    key = ("lsh", id(frame), len(frame), cfg.num_perm, cfg.shingle, cfg.threshold)
    if key not in data.shared:
        hashes = _minhashes(list(frame[TEXT]), cfg)
        lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
        with lsh.insertion_session() as session:
            for i, m in enumerate(hashes):
                session.insert(i, m)
        data.shared[key] = (hashes, lsh)
    return data.shared[key]


def _near_duplicates(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    assert isinstance(cfg, NearDuplicates)
    frame = _train_sample(data, cfg.sample_rows)
    if len(frame) < 2:
        return None
    hashes, lsh = _train_index(data, frame, cfg)
    wheres = frame[WHERE]
    flagged: set[int] = set()
    examples: list[str] = []
    for i, m in enumerate(hashes):
        others = [j for j in lsh.query(m) if j != i and m.jaccard(hashes[j]) >= cfg.threshold]
        if others:
            flagged.add(i)
            if len(examples) < 5 and i < others[0]:
                examples.append(f"{wheres.iloc[i]} ~ {wheres.iloc[others[0]]}")
    share = len(flagged) / len(frame)
    return CheckResult(
        "near_duplicates",
        cfg.severity,
        share <= cfg.max_share,
        round(share, 6),
        cfg.max_share,
        f"{len(flagged)} rows have a near-duplicate (Jaccard >= {cfg.threshold}) in train "
        f"({share:.1%}){_sample_note(data.train, frame)}",
        examples,
    )


def _contamination_near(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    assert isinstance(cfg, NearDuplicates)
    train = _train_sample(data, cfg.sample_rows)
    held = _sample(data.eval.dropna(subset=[TEXT]), cfg.sample_rows)
    if not len(train) or not len(held):
        return None
    train_hashes, lsh = _train_index(data, train, cfg)
    train_where, held_where = train[WHERE], held[WHERE]
    leaked, examples = 0, list[str]()
    for i, m in enumerate(_minhashes(list(held[TEXT]), cfg)):
        hits = [j for j in lsh.query(m) if m.jaccard(train_hashes[j]) >= cfg.threshold]
        if hits:
            leaked += 1
            if len(examples) < 5:
                examples.append(f"{held_where.iloc[i]} ~ {train_where.iloc[hits[0]]}")
    share = leaked / len(held)
    note = _sample_note(data.train, train) or _sample_note(data.eval, held)
    return CheckResult(
        "contamination_near",
        cfg.severity,
        share <= cfg.max_share,
        round(share, 6),
        cfg.max_share,
        f"{leaked} eval rows have a near-duplicate in train ({share:.1%}){note}",
        examples,
    )


def _distinct_ngrams(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    assert isinstance(cfg, DistinctNgrams)
    frame = _train_sample(data, cfg.sample_rows)
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in frame[TEXT]:
        words = _words(text)
        grams = [tuple(words[i : i + cfg.n]) for i in range(len(words) - cfg.n + 1)]
        total += len(grams)
        seen.update(grams)
    if total == 0:
        return None
    ratio = len(seen) / total
    return CheckResult(
        "distinct_ngrams",
        cfg.severity,
        ratio >= cfg.min_ratio,
        round(ratio, 6),
        cfg.min_ratio,
        f"distinct-{cfg.n}-gram ratio {ratio:.3f} ({len(seen):,} of {total:,})"
        f"{_sample_note(data.train, frame)}",
    )


def _token_length(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    assert isinstance(cfg, TokenLength)
    if data.count_tokens is None or not data.max_length:
        return None
    frame = _train_sample(data, cfg.sample_rows)
    if not len(frame):
        return None
    lengths = data.count_tokens([str(t) for t in frame[TEXT]])
    over = [(w, n) for w, n in zip(frame[WHERE], lengths, strict=True) if n > data.max_length]
    share = len(over) / len(frame)
    return CheckResult(
        "token_length",
        cfg.severity,
        share <= cfg.max_truncated_share,
        round(share, 6),
        cfg.max_truncated_share,
        f"{len(over)} rows longer than max_length {data.max_length} tokens would be truncated "
        f"({share:.1%}){_sample_note(data.train, frame)}",
        [f"{w}: {n} tokens" for w, n in over[:5]],
    )


def _chat_problem(messages: Any, roles: list[str]) -> str | None:
    if hasattr(messages, "tolist"):
        messages = messages.tolist()
    if not isinstance(messages, list) or not messages:
        return "messages is not a non-empty list"
    expected = None
    seen_assistant = False
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            return f"message {i} lacks role/content"
        role, content = message["role"], message["content"]
        if role not in roles:
            return f"message {i} has unknown role {role!r}"
        if not isinstance(content, str) or not content.strip():
            return f"message {i} ({role}) has empty content"
        if role == "system":
            if i != 0:
                return f"system message at position {i} (only first)"
            continue
        if role == "tool":
            continue
        if expected is not None and role != expected:
            return f"message {i}: {role} follows {'user' if role == 'user' else 'assistant'}"
        if expected is None and role != "user":
            return "conversation does not start with a user turn"
        seen_assistant |= role == "assistant"
        expected = "assistant" if role == "user" else "user"
    if not seen_assistant:
        return "no assistant turn"
    return None


def _chat_structure(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    if data.format != "chat":
        return None
    assert isinstance(cfg, ChatStructure)
    bad: list[str] = []
    frames = [f for f in (data.train, data.eval) if len(f)]
    total = sum(len(f) for f in frames)
    for frame in frames:
        for where, messages in frame[[WHERE, "messages"]].itertuples(index=False):
            problem = _chat_problem(messages, cfg.roles)
            if problem:
                bad.append(f"{where}: {problem}")
    share = len(bad) / total if total else 0.0
    return CheckResult(
        "chat_structure",
        cfg.severity,
        share <= cfg.max_share,
        round(share, 6),
        cfg.max_share,
        f"{len(bad)} conversations with invalid roles, order or turns ({share:.1%})",
        bad[:5],
    )


def _preference_pairs(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    if data.format != "preference":
        return None
    assert isinstance(cfg, MaxShare)
    bad: list[str] = []
    total = 0
    for frame in (data.train, data.eval):
        total += len(frame)
        for where, chosen, rejected in frame[[WHERE, "chosen", "rejected"]].itertuples(index=False):
            if chosen is None or not str(chosen).strip():
                bad.append(f"{where}: empty chosen")
            elif rejected is None or not str(rejected).strip():
                bad.append(f"{where}: empty rejected")
            elif _norm(chosen) == _norm(rejected):
                bad.append(f"{where}: chosen identical to rejected")
    share = len(bad) / total if total else 0.0
    return CheckResult(
        "preference_pairs",
        cfg.severity,
        share <= cfg.max_share,
        round(share, 6),
        cfg.max_share,
        f"{len(bad)} pairs with an empty side or chosen == rejected ({share:.1%})",
        bad[:5],
    )


def _preference_length_bias(cfg: CheckConfig, data: ContractData) -> CheckResult | None:
    if data.format != "preference" or not len(data.train):
        return None
    assert isinstance(cfg, LengthBias)
    chosen = data.train["chosen"].fillna("").astype(str).str.len()
    rejected = data.train["rejected"].fillna("").astype(str).str.len()
    longer = float((chosen > rejected).mean())
    ok = (1 - cfg.max_share) <= longer <= cfg.max_share
    return CheckResult(
        "preference_length_bias",
        cfg.severity,
        ok,
        round(longer, 6),
        cfg.max_share,
        f"chosen is longer than rejected in {longer:.1%} of pairs; a model can learn length "
        "instead of preference when this is far from 50%",
    )


PLAIN_CHECKS: dict[str, Callable[[CheckConfig, ContractData], CheckResult | None]] = {
    "malformed_records": _issue_check(
        "malformed_records", ("malformed",), "records could not be read"
    ),
    "encoding": _issue_check("encoding", ("encoding",), "files or lines are not valid UTF-8"),
    "method_minimum": _method_minimum,
    "conflicting_labels": _conflicting_labels,
    "label_balance": _label_balance,
    "label_count": _label_count,
    "eval_size": _eval_size,
    "contamination_exact": _contamination_exact,
    "near_duplicates": _near_duplicates,
    "contamination_near": _contamination_near,
    "distinct_ngrams": _distinct_ngrams,
    "token_length": _token_length,
    "chat_structure": _chat_structure,
    "preference_pairs": _preference_pairs,
    "preference_length_bias": _preference_length_bias,
}


def _with_text(frame: pd.DataFrame, data_format: str) -> pd.DataFrame:
    frame = frame.copy()
    frame[TEXT] = row_text(frame, data_format) if len(frame) else pd.Series([], dtype=object)
    if WHERE not in frame:
        frame[WHERE] = [f"row {i + 1}" for i in range(len(frame))]
    return frame


def run_contract(contract: Contract, data: ContractData) -> Report:
    """Run every enabled check of `contract` on `data`; the report lists them in contract order."""
    data.train = _with_text(data.train, data.format)
    data.eval = _with_text(data.eval, data.format)
    data.required = [c for c in data.required if c in data.train.columns]
    data.text_fields = [c for c in data.text_fields if c in data.train.columns]
    active = {n: c for n, c in contract.checks.items() if c.severity != "off"}
    collected: dict[str, list[Any]] = {}
    rows: dict[str, int] = {}
    for split, frame in (("train", data.train), ("eval", data.eval)):
        if not len(frame) and split == "eval":
            continue
        planned = [
            (name, e)
            for name, cfg in active.items()
            if name not in PLAIN_CHECKS
            for e in _gx_expectations(name, cfg, data, split)
        ]
        for result in _run_gx(frame, [e for _, e in planned], split, data.gx_runs):
            check = result.expectation_config.meta["check"]
            collected.setdefault(check, []).append(result)
        for name in {n for n, _ in planned}:
            rows[name] = rows.get(name, 0) + len(frame)
    results: list[CheckResult] = []
    for name, cfg in active.items():
        if name in PLAIN_CHECKS:
            outcome = PLAIN_CHECKS[name](cfg, data)
            if outcome is not None:
                results.append(outcome)
        elif collected.get(name):
            results.append(_interpret_gx(name, cfg, collected[name], rows.get(name, 0)))
    return Report(contract.name, len(data.train), len(data.eval), results, data.gx_runs)


def data_docs(report: Report, target: Any, template_cache: str | Path | None = None) -> list[str]:
    """Build Great Expectations Data Docs for the report's suites into `target`; returns the
    index pages written (one site per split). With `template_cache` (a folder), the pages'
    templates are compiled once there, not again for every page (`data_contracts.docs_views`)."""
    import shutil

    pages = []
    for split, context in report.gx_runs:
        if template_cache is not None:
            from data_contracts.docs_views import use_cached_views

            use_cached_views(context, str(template_cache))
        context.build_data_docs()
        for site in context.get_docs_sites_urls():
            source = Path(str(site["site_url"]).removeprefix("file://")).parent
            destination = Path(target) / f"gx_{split}"
            if destination.exists():
                shutil.rmtree(destination)
            shutil.copytree(source, destination)
            pages.append(str(destination / "index.html"))
    return pages
