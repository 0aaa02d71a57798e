"""Data Docs built with the contract's cached page views (`data_contracts.docs_views`) are GX's own
pages, byte for byte but for the run's time stamps, whether the template cache is cold or warm."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from data_contracts import ContractData, load_contract, run_contract
from data_contracts.runner import data_docs
from tests.conftest import keyword_rows

# what differs between two builds of the same report: when its validation ran, and the ids GX
# draws for its collapsible blocks
STAMP = re.compile(
    r"\d{8}T\d{6}\.\d{6}Z|\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?: UTC|Z)"
    r"|_run_time_sort': [0-9.]+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def report() -> object:
    rows = keyword_rows(60)
    data = ContractData(
        format="classification",
        train=pd.DataFrame(rows[:50]),
        eval=pd.DataFrame(rows[50:]),
        required=["text", "label"],
        text_fields=["text"],
    )
    return run_contract(load_contract(None, None, data.format), data)


def pages(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*.html")):
        relative = STAMP.sub("<time>", str(path.relative_to(folder)))
        out[relative] = STAMP.sub("<time>", path.read_text())
    return out


def test_cached_views_write_gxs_pages_cold_and_warm(tmp_path: Path) -> None:
    plain = data_docs(report(), tmp_path / "plain")
    assert plain and all(Path(p).is_file() for p in plain)
    expected = pages(tmp_path / "plain")
    assert any("validations" in name for name in expected)  # suites, results and the index

    cache = tmp_path / "templates"
    cold = data_docs(report(), tmp_path / "cold", cache)
    compiled = sorted(p.name for p in cache.iterdir())
    assert compiled, "no template was compiled into the cache"
    warm = data_docs(report(), tmp_path / "warm", cache)
    assert sorted(p.name for p in cache.iterdir()) == compiled  # read back, not compiled again

    assert [Path(p).relative_to(tmp_path / "cold") for p in cold] == [
        Path(p).relative_to(tmp_path / "plain") for p in plain
    ]
    assert len(warm) == len(plain)
    assert pages(tmp_path / "cold") == expected
    assert pages(tmp_path / "warm") == expected
