"""Writes the example data of the causal-LM recipes (run from the repository root):

    python deployments/data/make_assistant_data.py

A small assistant domain a tiny model can learn on CPU in minutes: repeating a sentence, naming
its first or last word, counting its words, giving the opposite of a word, and short facts about
a made-up town. The same examples appear in every format the recipes accept (text corpus,
prompt-completion, alpaca, chat, explicit and implicit-prompt preference pairs), and the tiny
model's tokenizer is trained on their text (`tasks/resources/tiny_corpus.txt`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "assistant"
CORPUS = HERE.parent.parent / "tasks" / "resources" / "tiny_corpus.txt"

PEOPLE = [
    "the baker",
    "my neighbour",
    "a young pilot",
    "the old sailor",
    "our teacher",
    "the mayor",
    "a quiet student",
    "the gardener",
    "my sister",
    "the doctor",
    "a tired driver",
    "the poet",
]
VERBS = [
    "painted",
    "carried",
    "found",
    "repaired",
    "sold",
    "bought",
    "cleaned",
    "opened",
    "borrowed",
    "described",
    "noticed",
    "planted",
]
THINGS = [
    "a blue boat",
    "the wooden gate",
    "three red apples",
    "a broken clock",
    "the tall ladder",
    "a small garden",
    "the heavy box",
    "a new kettle",
    "the green door",
    "two warm coats",
    "a paper kite",
    "the silver key",
]
PLACES = [
    "near the harbour",
    "before breakfast",
    "in the rain",
    "after the market closed",
    "on a windy hill",
    "behind the library",
    "at the station",
    "during the holiday",
]
OPPOSITES = [
    ("hot", "cold"),
    ("early", "late"),
    ("open", "closed"),
    ("light", "dark"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("full", "empty"),
    ("high", "low"),
    ("soft", "hard"),
    ("young", "old"),
    ("wet", "dry"),
    ("near", "far"),
    ("loud", "quiet"),
    ("rich", "poor"),
    ("thick", "thin"),
    ("strong", "weak"),
    ("clean", "dirty"),
    ("long", "short"),
    ("warm", "cool"),
    ("first", "last"),
]
TOWN = {
    "river": "The river in Ashford is called the Lune.",
    "market": "The Ashford market opens every Saturday morning.",
    "bridge": "The old bridge in Ashford was built of grey stone.",
    "library": "The Ashford library lends books and bicycles.",
    "festival": "Ashford holds a lantern festival every autumn.",
    "harbour": "Fishing boats leave the Ashford harbour at dawn.",
}
NUMBERS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]


def sentence(rng: random.Random) -> str:
    parts = [rng.choice(PEOPLE), rng.choice(VERBS), rng.choice(THINGS)]
    if rng.random() < 0.5:
        parts.append(rng.choice(PLACES))
    text = " ".join(parts)
    return text[0].upper() + text[1:] + "."


def task(rng: random.Random) -> tuple[str, str, str, str]:
    """(instruction, input, answer, wrong answer)."""
    kind = rng.choice(["repeat", "first", "last", "count", "opposite", "town"])
    if kind == "opposite":
        word, answer = rng.choice(OPPOSITES)
        if rng.random() < 0.5:
            word, answer = answer, word
        return "Give the opposite of this word.", word, answer, word
    if kind == "town":
        topic = rng.choice(sorted(TOWN))
        wrong = TOWN[rng.choice([t for t in TOWN if t != topic])]
        return f"Tell me about the {topic} in Ashford.", "", TOWN[topic], wrong
    text = sentence(rng)
    words = text.rstrip(".").split()
    if kind == "repeat":
        return "Repeat this sentence exactly.", text, text, sentence(rng)
    if kind == "first":
        return "What is the first word of this sentence?", text, words[0], words[-1]
    if kind == "last":
        return "What is the last word of this sentence?", text, words[-1], words[0]
    count = len(words)
    return "How many words are in this sentence?", text, NUMBERS[count], NUMBERS[count - 2]


def prompt_of(instruction: str, given: str) -> str:
    return f"{instruction}\n{given}" if given else instruction


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def examples(rng: random.Random, n: int, seen: set[str]) -> list[tuple[str, str, str, str]]:
    out: list[tuple[str, str, str, str]] = []
    while len(out) < n:
        item = task(rng)
        key = prompt_of(item[0], item[1])
        if key in seen:
            continue
        seen.add(key)
        out.append(item)
    return out


def story(rng: random.Random) -> str:
    lines = [sentence(rng) for _ in range(rng.randint(3, 6))]
    if rng.random() < 0.5:
        lines.append(rng.choice(list(TOWN.values())))
    word, other = rng.choice(OPPOSITES)
    lines.append(f"The opposite of {word} is {other}.")
    return " ".join(lines)


def main() -> None:
    rng = random.Random(7)
    seen: set[str] = set()
    train = examples(rng, 480, seen)
    held = examples(rng, 60, seen)
    for split, items in (("train", train), ("eval", held)):
        write_jsonl(
            OUT / f"{split}.prompt_completion.jsonl",
            [{"prompt": prompt_of(i, g) + "\n", "completion": a} for i, g, a, _ in items],
        )
        write_jsonl(
            OUT / f"{split}.alpaca.jsonl",
            [{"instruction": i, "input": g, "output": a} for i, g, a, _ in items],
        )
        write_jsonl(
            OUT / f"{split}.chat.jsonl",
            [
                {
                    "messages": [
                        {"role": "system", "content": "You are a careful assistant."},
                        {"role": "user", "content": prompt_of(i, g)},
                        {"role": "assistant", "content": a},
                    ]
                }
                for i, g, a, _ in items
            ],
        )
        write_jsonl(
            OUT / f"{split}.preference.jsonl",
            [
                {"prompt": prompt_of(i, g) + "\n", "chosen": a, "rejected": w}
                for i, g, a, w in items
            ],
        )
        write_jsonl(
            OUT / f"{split}.hh.jsonl",
            [
                {
                    "conversation_a": f"\n\nHuman: {prompt_of(i, g)}\n\nAssistant: {a}",
                    "conversation_b": f"\n\nHuman: {prompt_of(i, g)}\n\nAssistant: {w}",
                }
                for i, g, a, w in items
            ],
        )
    corpus = OUT / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    stories = [story(rng) for _ in range(600)]
    for part in range(3):
        (corpus / f"stories-{part + 1}.txt").write_text("\n\n".join(stories[part::3]) + "\n")
    (OUT / "eval.corpus.txt").write_text("\n\n".join(story(rng) for _ in range(60)) + "\n")
    CORPUS.parent.mkdir(parents=True, exist_ok=True)
    lines = stories[:200] + [f"{prompt_of(i, g)}\n{a}" for i, g, a, _ in train]
    CORPUS.write_text("\n\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
