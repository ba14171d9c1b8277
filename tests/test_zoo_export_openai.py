"""Export of the OpenAI CLIP acceptance checkpoints (published layouts, seeded weights) to ONNX,
ExecuTorch and Core ML through the parity gate (a file of its own so pytest-xdist spreads the work).

The ViT-B/32 bundle's text artifacts are also run at 8, 16, 32 and 77 tokens here: its text tower is causal,
so ONNX and ExecuTorch take a variable length (issue 21's `[1, 8]` acceptance point), and the bundle's own
probe ids and 77-token PyTorch reference are what they are checked against."""
import numpy as np
import pytest

from clipdeploy.export.pipeline import _caller
from clipdeploy.export.targets import backend
from clipdeploy.models import shapes as S
from test_zoo_clip import CASES, IDS, check_export

SELECTED = CASES[4:]


@pytest.mark.parametrize("model,fmt", SELECTED, ids=IDS[:4] if SELECTED == CASES[:4] else IDS[4:])
def test_export_onnx_executorch_coreml_pass_the_gate(seeded_model, model, fmt, tmp_path):
    man = check_export(seeded_model, model, fmt, tmp_path)
    if (model, fmt) == ("openai_vit_b32", "openai"):
        _text_takes_8_tokens_with_the_77_token_embedding(man, tmp_path / "b")


def _text_takes_8_tokens_with_the_77_token_embedding(man, root):
    ids = np.load(root / "probe" / "token_ids.npy")
    ref = np.load(root / "probe" / "text_embeddings.npy")
    assert S.token_count(ids[0]) <= 8                          # "a photo of a dog": 7 tokens
    for target in ("onnx", "executorch"):
        [art] = [a for a in man["artifacts"] if (a["target"], a["precision"], a["encoder"]) == (target, "fp32", "text")]
        assert art["inputs"][0]["shape"][1] == "length", art["inputs"]
        run = _caller(backend(target), root / art["path"])           # the pipeline's own shape-check caller
        for L in (8, 16, 32, 77):
            rows = [i for i in range(len(ids)) if S.token_count(ids[i]) <= L]
            got = np.concatenate([run(ids[i:i + 1, :L]) for i in rows])
            assert np.abs(got - ref[rows]).max() <= 1e-5, (target, L)
        assert np.abs(run(ids[:1, :8]) - ref[:1]).max() <= 1e-5, target      # the acceptance point: [1, 8]
        if target == "executorch":                  # beyond the bound: refused (ONNX Runtime has no bound)
            with pytest.raises(Exception):
                run(np.zeros((1, 78), np.int32))
