"""CLIP BPE tokenizer: open_clip's ``SimpleTokenizer`` (OpenAI vocab, shipped with open_clip).

Returns int32 ids [N, 77]: SOT 49406, the BPE ids, EOT 49407, padded with 0. Over-long captions are
truncated with EOT kept as the last token. int32 is what the exported encoders and the apps take.
"""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
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
