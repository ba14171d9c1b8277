import collections
import gc
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CLIPDEPLOY_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "reference"
APPLE_MODELS = ["mobileclip_s0", "mobileclip_s1", "mobileclip_s2", "mobileclip_b"]
# what the per-backend export tests run on: S1 is MCi1 + the 12-layer text transformer, the block types and text
# tower of S2 (MCi2) with other depths and widths, so S2 stands for it there (S1 is built, loaded from its
# released layout and reparameterized in test_models / test_layouts / test_reparam)
EXPORT_MODELS = ["mobileclip_s0", "mobileclip_s2", "mobileclip_b"]

# `make test` runs two pytest-xdist workers on this 2-core machine: one thread each, no oversubscription
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="module")
def interpreter_one_thread():
    """The Core ML reference interpreter's kernels on one torch thread for a module (use with
    ``pytestmark = pytest.mark.usefixtures("interpreter_one_thread")``): on the 2-core reference
    machine a second busy process makes 2-thread OpenMP kernels up to 10x slower (barrier spinning);
    the numbers do not depend on it. Loaded programs hold their weights: the cache is cleared after."""
    from clipdeploy.latency import coreml_ref
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
    coreml_ref.clear_cache()


@pytest.fixture(scope="session")
def jvm_classes(tmp_path_factory):
    """The Android app's JVM core (android_app/clipdeploy-core) compiled with javac, as `make jvm-test` does."""
    import shutil
    import subprocess
    javac = shutil.which("javac")
    if javac is None:   # make test runs `make jvm-deps` first, so this only happens outside it
        pytest.fail("javac is not installed: run `make jvm-deps` (Debian's openjdk-17-jdk-headless and junit4)")
    out = tmp_path_factory.mktemp("jvm")
    srcs = sorted(str(p) for p in (REPO / "android_app" / "clipdeploy-core" / "src" / "main" / "java").rglob("*.java"))
    r = subprocess.run([javac, "-encoding", "UTF-8", "--release", "8", "-Xlint:all,-options", "-Werror",
                        "-d", str(out)] + srcs, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def swift_tools():
    """The iOS kit's command-line twins (`clipdeploy-report`, `clipdeploy-tokenize`) built with SwiftPM, as
    `make swift-test` builds them (incremental in ios_app/.build): {product name: executable path}."""
    import shutil
    import subprocess
    swift = shutil.which("swift")
    if swift is None:   # the project's machines have Swift 6.3.1 on the PATH; make test builds it first
        pytest.fail("swift is not on the PATH: install the Swift 6.3 toolchain (swift.org) to build ios_app/")
    pkg = REPO / "ios_app"
    out = {}
    for product in ("clipdeploy-report", "clipdeploy-tokenize"):
        r = subprocess.run([swift, "build", "--package-path", str(pkg), "--product", product],
                           capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    r = subprocess.run([swift, "build", "--package-path", str(pkg), "--show-bin-path"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for product in ("clipdeploy-report", "clipdeploy-tokenize"):
        out[product] = Path(r.stdout.strip()) / product
        assert out[product].is_file(), out[product]
    return out


def read_reference_layout(name):
    """{key: (dtype name, shape)} from ../shared/reference/<name>.keys.tsv."""
    path = REFERENCE / f"{name}.keys.tsv"
    if not path.exists():
        pytest.fail(f"reference layout {path} is missing: the tests need the project's shared/ "
                    f"folder beside the repository (or CLIPDEPLOY_SHARED pointing to it)")
    out = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, dtype, shape = line.split("\t")
        out[key] = (dtype, () if shape == "scalar" else tuple(int(s) for s in shape.split("x")))
    return out


_MODELS = collections.OrderedDict()
# what one worker keeps of built models: ~1 GB of fp32 weights. Keeping every model a worker ever
# built (25 in the zoo, L/14@336 alone 428M parameters) grew a worker past 16 GB and the OOM killer
# ended it.
SEEDED_CACHE_PARAMS = 250_000_000


def _n_params(m):
    return sum(p.numel() for p in m.module.parameters())


@pytest.fixture(scope="session")
def seeded_model():
    """load_model(name, random_weights=0), built once and kept while the worker's cache of recently
    used models stays under SEEDED_CACHE_PARAMS (least recently used goes first)."""
    from clipdeploy.models import load_model

    def get(name, seed=0):
        key = (name, seed)
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key]
        m = _MODELS[key] = load_model(name, random_weights=seed)
        while len(_MODELS) > 1 and sum(_n_params(v) for v in _MODELS.values()) > SEEDED_CACHE_PARAMS:
            _MODELS.popitem(last=False)
        gc.collect()
        return m
    return get


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Downloads in tests never touch the user's cache."""
    monkeypatch.setenv("CLIPDEPLOY_CACHE", str(tmp_path / "cache"))


_FUSED_SESSION = {}
_PROBE_REFERENCES = {}


@pytest.fixture(scope="session")
def fused_session(seeded_model):
    """reparameterize(load_model(name, random_weights=0)) -> fused CLIPModel, once per session."""
    from clipdeploy.reparam import reparameterize

    def get(name):
        if name not in _FUSED_SESSION:
            _FUSED_SESSION[name] = reparameterize(seeded_model(name))[0]
        return _FUSED_SESSION[name]
    return get


@pytest.fixture(scope="session")
def probe_reference(fused_session):
    """(images float32 [6,3,R,R], ids int32 [8,77], ref image emb [6,D], ref text emb [8,D]) as numpy,
    from the fused model's export wrappers (the PyTorch reference every artifact is compared with)."""
    from clipdeploy.export.wrappers import encoder
    from clipdeploy.models.probe import PROBE_CAPTIONS, probe_images

    cache = _PROBE_REFERENCES

    def get(name):
        if name not in cache:
            m = fused_session(name)
            images = probe_images(m.spec.image_size, 6)
            ids = m.tokenize(PROBE_CAPTIONS)
            with torch.no_grad():
                ri = encoder(m.module, m.spec, "image")(images)
                rt = encoder(m.module, m.spec, "text")(ids)
            cache[name] = (images.numpy(), ids.numpy(), ri.numpy(), rt.numpy())
        return cache[name]
    return get


def _rss_mb() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:   # not Linux
        pass
    return 0


#: a worker whose resident size is above this after a file drops its session caches (built models, fused
#: models, probe references, loaded Core ML programs, dynamo's graphs): two workers share 24 GB, and a
#: worker that had built S0..B, exported them and kept them was seen at 10-13 GB, enough for the next big
#: model on the other worker to start the OOM killer
WORKER_RSS_LIMIT_MB = 5000


@pytest.fixture(autouse=True, scope="module")
def _release_memory_after_module():
    """A worker runs many files in one process: after each one, collect and hand freed heap back to the OS
    (glibc keeps it otherwise; exports leave large fragmented heaps behind), and past WORKER_RSS_LIMIT_MB
    drop the session caches first (rebuilding a model costs seconds; an OOM-killed worker costs the run)."""
    yield
    import ctypes
    if _rss_mb() > WORKER_RSS_LIMIT_MB:
        _MODELS.clear()
        _FUSED_SESSION.clear()
        _PROBE_REFERENCES.clear()
        from clipdeploy.latency import coreml_ref
        coreml_ref.clear_cache()
        try:
            torch._dynamo.reset()
        except Exception:   # noqa: BLE001 (an older torch without dynamo: nothing cached there)
            pass
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        pass


#: the L/14-class models (1.2-1.7 GB of fp32 weights a copy; a test holds two or three copies at its peak)
#: run in their own pytest run on fresh workers (`make test`, `-m bigmem`): the marker is added to every test
#: parametrized with one of them
BIGMEM_MODELS = {"mobileclip2_l14", "mobileclip2_s4", "openai_vit_l14", "openai_vit_l14_336", "openai_rn50x16"}


def _bigmem(item) -> bool:
    cs = getattr(item, "callspec", None)
    return cs is not None and any(isinstance(v, str) and v in BIGMEM_MODELS for v in cs.params.values())


# `make test` hands whole files to its two workers (--dist loadfile) in the order collected here
# (--no-loadscope-reorder; xdist's default would put the files with most tests first, which are the quick
# ones, and leave the few-but-long export files to the end, one worker finishing them while the other idles).
# The long files go first, longest first (seconds of one worker, measured in `make test --durations`), so that
# what is left at the end is short.
LONG_FILES = ["test_zoo_export_tinyclip.py", "test_zoo_export_openai.py", "test_export_cli.py", "test_quant_coreml.py",
              "test_shapes.py", "test_backend_executorch.py", "test_zoo_clip.py", "test_backend_onnx.py",
              "test_backend_coreml.py", "test_validation_gate.py", "test_backend_litert.py", "test_quant_onnx.py",
              "test_coreml_ref.py", "test_coreml_ref_encoders.py", "test_goldens.py", "test_layouts.py",
              "test_classifier.py", "test_models.py"]


@pytest.hookimpl(tryfirst=True)   # before -m deselects: the bigmem marker is added here
def pytest_collection_modifyitems(config, items):
    for it in items:
        if _bigmem(it):
            it.add_marker(pytest.mark.bigmem)
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda it: rank.get(Path(str(it.fspath)).name, len(LONG_FILES)))
