"""Contamination in disguise: an eval row equal to a train row except for Unicode normalisation
(composed or decomposed accents, full-width letters, ligatures), case, spacing or invisible format
characters (zero-width space, joiners, byte order mark, soft hyphen) is caught by the exact and
the near contamination checks, whichever side wears the disguise."""

from __future__ import annotations

import unicodedata

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from data_contracts import ContractData, runner
from data_contracts.contract import MaxShare, NearDuplicates

LETTERS = "abcdefghijklmnopqrstuvwxyzéèêëñüöçàåôø"
HIDDEN = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e", "\u2062"]
words = st.text(alphabet=LETTERS, min_size=2, max_size=8)
texts = st.lists(words, min_size=4, max_size=12).map(" ".join)
UNSEEN = "0 1 2 3 4 5 6 7 8 9"  # no letters: never a train row


def _full_width(char: str) -> str:
    return chr(ord(char) - ord("a") + 0xFF41) if "a" <= char <= "z" else char


@st.composite
def disguised(draw: st.DrawFn, text: str) -> str:
    """`text` as another tool might have written it: every step keeps what a reader sees."""
    if draw(st.booleans()):
        text = unicodedata.normalize("NFD", text)
    if draw(st.booleans()):
        text = "".join(_full_width(c) if draw(st.booleans()) else c for c in text)
    if draw(st.booleans()):
        text = text.replace("fi", "\ufb01")  # the fi ligature
    case = draw(st.sampled_from(["same", "upper", "title", "swapcase"]))
    text = text if case == "same" else getattr(text, case)()
    if draw(st.booleans()):
        text = text.replace(" ", draw(st.sampled_from(["  ", "\u00a0", " \t"])), 2)
    chars = list(text)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        at = draw(st.integers(min_value=0, max_value=len(chars)))
        chars.insert(at, draw(st.sampled_from(HIDDEN)))
    return "".join(chars)


def _data(train: list[str], held: list[str]) -> ContractData:
    def frame(rows: list[str], name: str) -> pd.DataFrame:
        out = pd.DataFrame(
            {
                "text": rows,
                "label": ["pos"] * len(rows),
                "_where": [f"{name}:{i + 1}" for i in range(len(rows))],
            }
        )
        return runner._with_text(out, "classification")

    return ContractData("classification", frame(train, "train"), frame(held, "eval"), ["text"])


@settings(max_examples=150, deadline=None)
@given(data=st.data(), original=texts, others=st.lists(texts, max_size=4))
def test_disguised_train_rows_are_caught_exact_and_near(
    data: st.DataObject, original: str, others: list[str]
) -> None:
    disguise = data.draw(disguised(original))
    assert disguise != original
    for train, held, leaked_at in (
        ([*others, original], [disguise, UNSEEN], "eval:1"),  # the eval row is disguised
        ([*others, disguise], [UNSEEN, original], "eval:2"),  # the train row is
    ):
        exact = runner._contamination_exact(MaxShare(), _data(train, held))
        assert exact is not None and exact.observed == 0.5, (train, held)
        assert exact.examples[0].startswith(leaked_at)
        near = runner._contamination_near(NearDuplicates(), _data(train, held))
        assert near is not None and near.observed == 0.5, (train, held)
        assert near.examples[0].startswith(leaked_at)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), texts, texts.flatmap(disguised)), max_size=10))
def test_arrow_normalisation_equals_the_plain_one(values: list[str | None]) -> None:
    for series in (pd.Series(values, dtype=object), pd.Series(values, dtype="str")):
        got = runner._normalised(series).to_pylist()
        assert got == [None if v is None else runner._norm(v) for v in values]


def test_the_canonical_form() -> None:
    assert (
        runner._norm("Cafe\u0301 \u200bDE\u00adTAIL  ﬁne \ufeffＳtraße")
        == "café detail fine strasse"
    )
    assert runner._norm("plain ascii, kept as IS") == "plain ascii, kept as is"
    # different words stay different: only what a reader cannot see is dropped
    assert runner._norm("resume") != runner._norm("résumé")


def test_chunked_arrow_backed_texts() -> None:
    chunked = pd.concat(
        [
            pd.Series(["Plain  text", None], dtype="str"),
            pd.Series(["Cafe\u0301\u200b"], dtype="str"),
        ],
        ignore_index=True,
    )
    assert runner._normalised(chunked).to_pylist() == ["plain text", None, "café"]
