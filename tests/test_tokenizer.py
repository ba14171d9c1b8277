import open_clip
import pytest
import torch

from clipdeploy.models import tokenize
from clipdeploy.models.tokenizer import EOT_ID, SOT_ID

CAPTIONS = [
    "", " ", "a", "a dog", "a photo of a cat", "A PHOTO OF A CAT", "a photo of a cat.",
    "two red apples on a wooden table", "a diagram of a rocket engine", "hello, world!",
    "it's a dog's life", "don't stop believin'", "3 cats and 12 dogs", "pi is 3.14159",
    "e-mail: someone@example.com", "https://example.com/path?q=1", "#hashtag @mention",
    "naïve café crème brûlée", "Größe über Ärger", "日本語のテキスト", "中文标题", "한국어 문장",
    "emoji 🐶🐱🚀", "Ελληνικά γράμματα", "русский текст", "tab\tseparated\twords",
    "new\nline", "   leading and trailing   ", "multiple     spaces", "&amp; html entities &lt;b&gt;",
    "a " * 100, "supercalifragilisticexpialidocious " * 20, "x" * 500,
]


def test_matches_open_clip_on_many_captions():
    assert len(CAPTIONS) >= 30
    ours = tokenize(CAPTIONS)
    ref = open_clip.tokenize(CAPTIONS)
    assert ours.dtype == torch.int32 and ours.shape == (len(CAPTIONS), 77)
    assert torch.equal(ours.long(), ref)


def test_known_ids():
    # OpenAI CLIP BPE ids, independent of open_clip's code path
    assert tokenize("a photo of a cat")[0, :7].tolist() == [SOT_ID, 320, 1125, 539, 320, 2368, EOT_ID]
    assert tokenize("a dog")[0, :4].tolist() == [49406, 320, 1929, 49407]
    empty = tokenize("")[0]
    assert empty[:2].tolist() == [SOT_ID, EOT_ID] and empty[2:].eq(0).all()


@pytest.mark.parametrize("text", ["a " * 100, "x" * 500, "日本語 " * 80])
def test_over_long_captions_keep_eot_last(text):
    ids = tokenize(text)[0]
    assert ids[0] == SOT_ID and ids[-1] == EOT_ID and (ids != 0).all()
    assert int(ids.argmax()) == 76  # EOT pooling picks the last position


def test_rejects_non_strings():
    with pytest.raises(TypeError):
        tokenize([1, 2])
