"""Export of the OpenAI CLIP acceptance checkpoints (published layouts, seeded weights) to ONNX,
ExecuTorch and Core ML through the parity gate (a file of its own so pytest-xdist spreads the work)."""
import pytest

from test_zoo_clip import CASES, IDS, check_export

SELECTED = CASES[4:]


@pytest.mark.parametrize("model,fmt", SELECTED, ids=IDS[:4] if SELECTED == CASES[:4] else IDS[4:])
def test_export_onnx_executorch_coreml_pass_the_gate(seeded_model, model, fmt, tmp_path):
    check_export(seeded_model, model, fmt, tmp_path)
