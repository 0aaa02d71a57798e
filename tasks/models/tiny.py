"""Tiny models built locally (no hub needed): a BERT-style encoder and a causal LM, each with a
tokenizer trained on the given text. For smoke runs, tests and offline examples."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tasks.core import atomic

SPECIAL_ENCODER = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _encoder_tokenizer(texts: list[str], vocab_size: int) -> object:
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_ENCODER)
    tok.train_from_iterator(texts, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def build_tiny_encoder(out_dir: str | Path, texts: Iterable[str], seed: int = 0) -> Path:
    """A 2-layer BERT encoder (hidden 32) and a WordPiece tokenizer trained on `texts`."""
    import torch
    from transformers import BertConfig, BertModel

    target = Path(out_dir)
    tokenizer = _encoder_tokenizer(list(texts), vocab_size=800)
    config = BertConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
    )
    torch.manual_seed(seed)
    model = BertModel(config)
    with atomic.staged(target) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))  # type: ignore[attr-defined]
    return target


# -- a tiny causal LM ------------------------------------------------------------------------------

TINY_CAUSAL = "tiny:causal-lm"
TINY_VERSION = "1"  # bump when the builder changes: the built folder is keyed by it
SPECIAL_CAUSAL = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
# ChatML, the template most chat models use; `{% generation %}` marks the assistant's tokens.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _causal_tokenizer(texts: list[str], vocab_size: int) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        show_progress=False,
        special_tokens=SPECIAL_CAUSAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # any byte still encodes
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|pad|>",
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama_config(vocab_size: int, **token_ids: Any) -> Any:
    """The tiny causal LM's architecture (2 layers, hidden 64) for a vocabulary of that size."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        **token_ids,
    )


def build_tiny_causal_lm(out_dir: str | Path, texts: Iterable[str], seed: int = 0) -> Path:
    """A 2-layer Llama-style causal LM (hidden 64) and a byte-level BPE tokenizer with a ChatML
    chat template, trained on `texts`. Deterministic for the same texts and seed."""
    import torch
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    target = Path(out_dir)
    tokenizer = _causal_tokenizer(list(texts), vocab_size=1024)
    config = tiny_llama_config(
        len(tokenizer),  # type: ignore[arg-type]
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = config.pad_token_id
    with atomic.staged(target) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))  # type: ignore[attr-defined]
    return target


def default_corpus() -> list[str]:
    """The text the tiny causal LM's tokenizer is trained on (shipped with tuneline)."""
    text = (Path(__file__).parent / "resources" / "tiny_corpus.txt").read_text(encoding="utf-8")
    return [doc for doc in text.split("\n\n") if doc.strip()]


def ensure_tiny_causal_lm(folder: Path) -> Path:
    """Build the tiny causal LM into `folder` unless it is already there (once per machine)."""
    from tasks.core import locks

    if (folder / "config.json").exists():
        return folder
    with locks.file_lock("tiny-causal-lm"):
        if not (folder / "config.json").exists():
            build_tiny_causal_lm(folder, default_corpus())
    return folder
