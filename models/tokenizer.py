"""CLIP BPE tokenizer: open_clip's ``SimpleTokenizer`` (OpenAI vocab, shipped with open_clip).

Returns int32 ids [N, 77]: SOT 49406, the BPE ids, EOT 49407, padded with 0. Over-long captions are
truncated with EOT kept as the last token. int32 is what the exported encoders and the apps take.
"""
from __future__ import annotations

import functools
from typing import Sequence, Union

import torch

SOT_ID = 49406
EOT_ID = 49407
PAD_ID = 0


@functools.lru_cache(maxsize=None)
def _tokenizer(context_length: int):
    from open_clip.tokenizer import SimpleTokenizer
    return SimpleTokenizer(context_length=context_length)


def bpe_vocab_path() -> str:
    """The BPE merges file (gzip) the tokenizer reads; export ships it inside bundles."""
    from open_clip.tokenizer import default_bpe
    return default_bpe()


def tokenize(texts: Union[str, Sequence[str]], context_length: int = 77) -> torch.Tensor:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("tokenize takes a string or a list of strings")
    return _tokenizer(context_length)(texts, context_length=context_length).to(torch.int32)
