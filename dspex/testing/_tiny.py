"""A tiny causal LM built locally (no download): for tests of finetuning and local serving.

``build_tiny_causal_lm(directory, texts)`` trains a byte-level BPE tokenizer on ``texts``
(the ``tokenizers`` library), gives it a chat template, builds a randomly initialised
Llama-architecture model of a few layers from a config, and saves both in Hugging Face format
— what ``dspex.LM("local/<directory>")`` and the finetuning task load like any hub model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from dspex._extras import require

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "build_tiny_causal_lm"]

SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>")
# Each message ends with the end-of-sequence token, so generation stops after the answer.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eos|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_causal_lm(
    directory: str | os.PathLike[str],
    texts: Iterable[str],
    *,
    vocab_size: int = 600,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
) -> Path:
    """Train a tokenizer on ``texts``, build a tiny model, save both under ``directory``.

    Example:
        >>> from dspex.testing import build_tiny_causal_lm
        >>> path = build_tiny_causal_lm("/tmp/tiny", ["What is 2 + 3?", "5"])  # doctest: +SKIP
    """
    torch, tokenizers, transformers = require("torch", "tokenizers", "transformers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    bpe = tokenizers.Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(texts), trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = transformers.LlamaForCausalLM(config)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
