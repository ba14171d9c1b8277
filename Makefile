# clipdeploy — set-up and the two jobs CI and users run.
#   make demo   create .venv if missing, install, run the main job end to end (offline, seeded weights)
#   make test   create .venv if missing, install, run the whole test suite (JVM core tests, the iOS kit's
#               swift build + swift test, then pytest: the parallel suite, then the latency tests that
#               must have the machine to themselves)
#   make jvm-test   compile the Android app's pure-Java core and run its JUnit tests against goldens/
#   make swift-test build the iOS kit (ios_app, SwiftPM) and run its XCTest suite against goldens/
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.clipdeploy-installed
DEMO   := out/demo

# The Android library's platform-independent core: plain Java, compiled and tested here with javac + JUnit 4
# (Debian's openjdk-17-jdk-headless and junit4; installed with apt when missing).
JAVA_CORE := android_app/clipdeploy-core
JVM_OUT   := $(JAVA_CORE)/build/jvm
JUNIT_CP  := /usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar
JAVAC     := javac -encoding UTF-8 --release 8 -Xlint:all,-options -Werror
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test clean jvm-deps adb-deps jvm-test swift-test goldens

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
	@echo "== export Core ML, ONNX, ExecuTorch and LiteRT bundles, each gated against PyTorch"
	$(BIN)/clip-export --model mobileclip_s0 --target all --random-weights 0 --out out/mobileclip_s0 --force
	@echo "== the Core ML artifacts through the reference interpreter (Core ML predict needs macOS)"
	$(BIN)/clip-latency verify out/mobileclip_s0
	@echo "== latency: every artifact on every runtime of this host, parity next to it"
	$(BIN)/clip-latency run out/mobileclip_s0 --runs 20 --json out/mobileclip_s0/latency.json
	@echo "== demo done: weights in $(DEMO)/, bundle in out/mobileclip_s0/, latency report out/mobileclip_s0/latency.json"

test: install adb-deps jvm-test swift-test
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not alone and not bigmem" --durations=30
	@echo "== the L/14-class models, on fresh workers (two copies of 1.7 GB models beside a long-running worker's heap outgrew 24 GB)"
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "bigmem and not alone"
	@echo "== latency tests that judge contention: alone on the machine"
	$(BIN)/python -m pytest -q -m alone

jvm-deps:
	@if ! command -v javac >/dev/null || [ ! -f /usr/share/java/junit4.jar ]; then \
	  echo "== installing openjdk-17-jdk-headless and junit4 (apt)"; \
	  $(SUDO) apt-get install -y -q --no-install-recommends openjdk-17-jdk-headless junit4 >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && \
	    $(SUDO) apt-get install -y -q --no-install-recommends openjdk-17-jdk-headless junit4 >/dev/null; }; fi

# adb (Debian's package): `clip-latency android` against the real client; with no phone attached the tests
# check its "no device" refusal
adb-deps:
	@if ! command -v adb >/dev/null; then \
	  echo "== installing adb (apt)"; \
	  $(SUDO) apt-get install -y -q --no-install-recommends adb >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q --no-install-recommends adb >/dev/null; }; fi

jvm-test: jvm-deps
	@echo "== JVM core of the Android app (org.clipdeploy.core): JUnit against goldens/"
	rm -rf $(JVM_OUT) && mkdir -p $(JVM_OUT)/main $(JVM_OUT)/test
	$(JAVAC) -d $(JVM_OUT)/main $$(find $(JAVA_CORE)/src/main/java -name '*.java')
	$(JAVAC) -cp $(JVM_OUT)/main:$(JUNIT_CP) -d $(JVM_OUT)/test $$(find $(JAVA_CORE)/src/test/java -name '*.java')
	java -Dclipdeploy.goldens=goldens -cp $(JVM_OUT)/main:$(JVM_OUT)/test:$(JUNIT_CP) org.junit.runner.JUnitCore \
	  $$(cd $(JAVA_CORE)/src/test/java && find . -name '*Test.java' | sed 's|^\./||; s|\.java$$||; s|/|.|g' | sort)

# The iOS kit: its portable core, the two command-line tools and the XCTest suite build and run wherever Swift
# does (Linux: swift-corelibs-foundation, no Apple frameworks; the Core ML parts compile only on Apple systems).
swift-test:
	@command -v swift >/dev/null || { echo "error: swift is not on the PATH: install the Swift 6.3 toolchain (swift.org) to build ios_app/"; exit 1; }
	@echo "== iOS kit (CLIPDeployKit): swift build + swift test against goldens/"
	swift build --package-path ios_app
	swift test --package-path ios_app

goldens: install
	$(BIN)/clip-latency goldens --out goldens

clean:
	rm -rf out .pytest_cache
