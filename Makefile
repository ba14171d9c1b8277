# clipdeploy — set-up and the two jobs CI and users run.
#   make demo   create .venv if missing, install, run the main job end to end (offline, seeded weights)
#   make test   create .venv if missing, install, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.clipdeploy-installed
DEMO   := out/demo

.PHONY: install demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	@echo "== the model zoo"
	$(BIN)/clip-models list
	@echo "== MobileCLIP-S0 on seeded weights in Apple's released .pt layout, saved and reloaded"
	$(BIN)/clip-models check mobileclip_s0 --random-weights 0 --save $(DEMO)/mobileclip_s0_seed0.pt --layout apple
	$(BIN)/clip-models check mobileclip_s0 --checkpoint $(DEMO)/mobileclip_s0_seed0.pt --json
	@echo "== reparameterize: fold every train-time branch, verify fold by fold, write a fused checkpoint"
	$(BIN)/clip-reparam --model mobileclip_s0 --checkpoint $(DEMO)/mobileclip_s0_seed0.pt -o $(DEMO)/mobileclip_s0_fused.pt --runs 10
	$(BIN)/clip-models check mobileclip_s0 --checkpoint $(DEMO)/mobileclip_s0_fused.pt
	@echo "== export Core ML, ONNX and ExecuTorch bundles, each gated against PyTorch"
	$(BIN)/clip-export --model mobileclip_s0 --target all --random-weights 0 --out out/mobileclip_s0 --force
	@echo "== the Core ML artifacts through the reference interpreter (Core ML predict needs macOS)"
	$(BIN)/clip-latency verify out/mobileclip_s0
	@echo "== latency: every artifact on every runtime of this host, parity next to it"
	$(BIN)/clip-latency run out/mobileclip_s0 --runs 20 --json out/mobileclip_s0/latency.json
	@echo "== demo done: weights in $(DEMO)/, bundle in out/mobileclip_s0/, latency report out/mobileclip_s0/latency.json"

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf out .pytest_cache
