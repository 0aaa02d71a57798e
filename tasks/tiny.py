"""Tiny models built locally (no hub needed): a BERT-style encoder and a causal LM, each with a
tokenizer trained on the given text. For smoke runs, tests and offline examples."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tasks import artifacts

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
    with artifacts.staged(target) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))  # type: ignore[attr-defined]
    return target
