"""CLIP BPE tokenizer: open_clip's ``SimpleTokenizer`` (OpenAI vocab, shipped with open_clip).

Returns int32 ids [N, 77]: SOT 49406, the BPE ids, EOT 49407, padded with 0. Over-long captions are
truncated with EOT kept as the last token. int32 is what the exported encoders and the apps take.

With ``length=<dimension descriptor>`` (a text artifact's ``shapes["length"]``, see
:mod:`clipdeploy.models.shapes`) the ids are instead [N, L], L the shortest length the artifact accepts that
holds every caption's tokens (:func:`shortest_length`): for a causal text tower the same embedding as 77
positions, with less work. The Java and Swift tokenizers of the apps implement the same rule
(``goldens/token_lengths.json``).
"""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from .shapes import ShapeError, shortest_accepted, validate

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


def _texts(texts) -> list:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("tokenize takes a string or a list of strings")
    return texts


def token_count(text: str, context_length: int = 77) -> int:
    """Tokens of ``text`` as the encoder sees them at ``context_length``: SOT, the BPE ids, EOT, at most
    ``context_length`` (longer captions are truncated there, EOT kept last)."""
    return min(len(_tokenizer(context_length).encode(text)) + 2, context_length)


def shortest_length(texts: Union[str, Sequence[str]], length: dict, context_length: int = 77) -> int:
    """The shortest length the descriptor ``length`` accepts that holds the tokens of every caption (each
    counted at ``context_length``, :func:`token_count`): :func:`clipdeploy.models.shapes.shortest_accepted`
    of the longest. A caption with more tokens than the largest accepted length is truncated to it by
    :func:`tokenize`, EOT kept last, as at 77."""
    validate(length, "text length")
    texts = _texts(texts)
    need = max((token_count(t, context_length) for t in texts), default=2)
    return shortest_accepted(length, need)


def tokenize(texts: Union[str, Sequence[str]], context_length: int = 77,
             length: Optional[dict] = None) -> torch.Tensor:
    """int32 ids [N, context_length]; with ``length`` (a dimension descriptor) [N, L],
    L = :func:`shortest_length` (``context_length`` then only bounds the token count)."""
    texts = _texts(texts)
    if length is not None:
        if not isinstance(length, dict):
            raise ShapeError(f"length must be a shape descriptor (dict), got {length!r}")
        context = shortest_length(texts, length, context_length)
        return _tokenizer(context_length)(texts, context_length=context).to(torch.int32)
    return _tokenizer(context_length)(texts, context_length=context_length).to(torch.int32)


def write_tokenizer_files(dest: Path, context_length: int = 77, bpe_file: bool = True) -> dict:
    """The tokenizer as files, so apps tokenize alike: ``vocab.json`` / ``merges.txt`` (Hugging Face CLIP
    format), ``tokenizer.json`` (ids and rules) and, with ``bpe_file``, open_clip's gzip BPE file. Returns the
    manifest's ``tokenizer`` block (paths relative to the bundle, ``tokenizer/…``)."""
    dest = Path(dest)
    tok = _tokenizer(context_length)
    dest.mkdir(parents=True, exist_ok=True)
    # HF CLIP spells the special tokens <|startoftext|>/<|endoftext|> (open_clip: <start_of_text>);
    # ids are the same, and the HF spelling is what Swift/Kotlin CLIP tokenizers look up.
    hf_names = {SOT_ID: "<|startoftext|>", EOT_ID: "<|endoftext|>"}
    vocab = {hf_names.get(i, t): i for t, i in tok.encoder.items()}
    (dest / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    merges = sorted(tok.bpe_ranks.items(), key=lambda kv: kv[1])
    (dest / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for (a, b), _ in merges),
                                     encoding="utf-8")
    cfg = {"type": "openai-clip-bpe", "sot_token_id": SOT_ID, "eot_token_id": EOT_ID,
           "pad_token_id": PAD_ID, "sot_token": "<|startoftext|>", "eot_token": "<|endoftext|>",
           "context_length": context_length, "lowercase": True,
           "clean": "ftfy + html unescape + whitespace collapse", "input_dtype": "int32",
           "truncation": "keep the first 76 tokens, EOT last", "vocab_size": len(tok.encoder),
           "merges_count": len(merges)}
    (dest / "tokenizer.json").write_text(json.dumps(cfg, indent=2))
    # file paths last: they are what the apps open (a count under the same key once hid the merges path)
    block = {**cfg, "config": "tokenizer/tokenizer.json", "vocab": "tokenizer/vocab.json",
             "merges": "tokenizer/merges.txt"}
    if bpe_file:
        shutil.copyfile(bpe_vocab_path(), dest / Path(bpe_vocab_path()).name)
        block["bpe"] = f"tokenizer/{Path(bpe_vocab_path()).name}"
    return block
