"""The tokenizer's shortest-accepted-length option (``tokenize(texts, length=descriptor)``), which the apps' Java
and Swift tokenizers reproduce through goldens/token_lengths.json."""
import numpy as np
import pytest

from clipdeploy.models import shapes as sh
from clipdeploy.models.tokenizer import EOT_ID, SOT_ID, shortest_length, token_count, tokenize

DESCRIPTORS = [sh.fixed(77), sh.enumerated([8, 16, 32, 77]), sh.dynamic(1, 77), sh.dynamic(12, 77),
               sh.dynamic(1, None), sh.dynamic(4, 32), sh.enumerated([8, 16]), sh.fixed(16)]
TEXTS = ["", "a photo of a dog", "a photo of a big dog", "a photo of a big red dog",
         "don't stop, it's the dog's ball; we'll see", "\u6771\u4eac\u306e\u591c\u666f", "a photo of " * 30 + "the end",
         " ".join(["dog"] * 75 + ["cat"])]


def test_without_length_the_ids_are_77_as_before():
    ids = tokenize(TEXTS)
    assert ids.shape == (len(TEXTS), 77) and ids.dtype.is_floating_point is False
    assert np.array_equal(tokenize(TEXTS, length=None).numpy(), ids.numpy())


@pytest.mark.parametrize("desc", DESCRIPTORS, ids=lambda d: str(d))
def test_each_caption_gets_the_shortest_accepted_length(desc):
    full = tokenize(TEXTS).numpy()
    for text, row77 in zip(TEXTS, full):
        n = token_count(text)
        assert n == sh.token_count(row77)                                   # SOT..EOT at 77
        got = tokenize(text, length=desc).numpy()
        assert got.dtype == np.int32 and got.shape[0] == 1
        L = got.shape[1]
        assert L == shortest_length(text, desc) == sh.shortest_accepted(desc, n) and sh.accepts(desc, L)
        if L >= n:      # nothing cut: exactly the 77 ids without (or with more) padding, = shapes.trim
            assert np.array_equal(got[0], np.pad(row77, (0, max(0, L - 77)))[:L])
            assert np.array_equal(got, sh.trim(full[[TEXTS.index(text)]], desc))
        else:           # more tokens than the largest accepted length: cut there, EOT last
            assert L == sh.largest(desc) and got[0, -1] == EOT_ID
            assert np.array_equal(got[0, :-1], row77[:L - 1])
        assert got[0, 0] == SOT_ID


def test_a_batch_shares_the_length_of_its_longest_caption():
    d = sh.enumerated([8, 16, 32, 77])
    ids = tokenize(["a dog", "a photo of a big red dog"], length=d).numpy()   # 4 and 9 tokens -> 16
    assert ids.shape == (2, 16)
    assert shortest_length(["a dog", "a photo of a big red dog"], d) == 16
    assert list(ids[0, :4]) == [SOT_ID, 320, 1929, EOT_ID] and not ids[0, 4:].any()
    assert tokenize([], length=d).shape == (0, 8)


def test_edge_cases():
    long = "dog " * 200
    assert token_count(long) == 77
    assert tokenize(long, length=sh.dynamic(1, None)).shape == (1, 77)        # unbounded: capped at the context
    assert np.array_equal(tokenize(long, length=sh.enumerated([8, 16, 32, 77])), tokenize(long))
    cut = tokenize(long, length=sh.enumerated([8, 16])).numpy()[0]
    assert len(cut) == 16 and cut[-1] == EOT_ID and cut[0] == SOT_ID
    pad = tokenize("", length=sh.dynamic(12, 77)).numpy()[0]
    assert len(pad) == 12 and list(pad[:2]) == [SOT_ID, EOT_ID] and not pad[2:].any()


@pytest.mark.parametrize("bad", [{"kind": "ragged"}, {"kind": "enumerated", "values": []},
                                 {"kind": "dynamic", "min": 0, "max": 77}, 77])
def test_malformed_descriptors_are_refused(bad):
    with pytest.raises(sh.ShapeError):
        tokenize("a dog", length=bad)
