"""ROUGE-L of the causal evaluation: the same figure as rouge_score's own scorer, without importing
its scorer module (nltk, scikit-learn, SciPy)."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from rouge_score import rouge_scorer

from tasks.evaluation.causal import rouge_l, text_rows

WORDS = ["the", "cat", "sat", "on", "mat", "A", "dog", "ran", "42", "x-ray", "naïve", "über", "。"]


def _text(rng: random.Random, longest: int) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(0, longest))]
    glue = [rng.choice([" ", "  ", ", ", ".\n", "!", "\t"]) for _ in words]
    return "".join(w + g for w, g in zip(words, glue, strict=True))


PAIRS = [
    ("the cat sat on the mat", "the cat sat on the mat"),
    ("the cat sat on the mat", "on the mat the cat sat"),
    ("The Cat!", "the cat"),
    ("", "something"),
    ("something", ""),
    ("", ""),
    ("!!! ...", "the answer"),
    ("日本語の文", "日本語の文"),  # no token rouge_score keeps: 0 for both
    ("a b c d e f g", "g f e d c b a"),
    ("one two three", "four five six"),
]


@pytest.mark.parametrize(("reference", "prediction"), PAIRS)
def test_rouge_l_is_rouge_scores_own_figure(reference: str, prediction: str) -> None:
    expected = rouge_scorer.RougeScorer(["rougeL"]).score(reference, prediction)["rougeL"]
    assert rouge_l(reference, prediction) == pytest.approx(expected.fmeasure, abs=1e-12)


def test_rouge_l_agrees_on_random_texts() -> None:
    rng = random.Random(7)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    figures = []
    for _ in range(400):
        reference, prediction = _text(rng, 30), _text(rng, 30)
        expected = scorer.score(reference, prediction)["rougeL"].fmeasure
        figures.append(expected)
        assert rouge_l(reference, prediction) == pytest.approx(expected, abs=1e-12)
    assert 0.0 in figures and any(0.0 < f < 1.0 for f in figures)  # the cases differ


def test_text_rows_score_each_answer() -> None:
    rows = text_rows(["the cat sat", "a dog."], ["the cat sat on the mat", "A dog"])
    assert [r["exact_match"] for r in rows] == [0.0, 1.0]
    assert rows[0]["rougeL"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert rows[1]["rougeL"] == 1.0


def test_scoring_imports_no_nltk() -> None:
    code = (
        "import sys; from tasks.evaluation.causal import text_rows; "
        "text_rows(['a b'], ['a c']); print(sorted(m for m in ('nltk', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
