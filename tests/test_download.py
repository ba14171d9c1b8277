"""Weight download against real HTTP servers on 127.0.0.1: the toolkit's own downloader (Apple's CDN,
OpenAI's files, user URLs) and, for Hugging Face files, huggingface_hub talking to a local stand-in for the
Hub (tests/httpserver.py HubServer) through HF_ENDPOINT, into a temporary HF_HUB_CACHE."""
import dataclasses
import hashlib
import os
import re
import socket
import time

import pytest
import torch

from clipdeploy.models import DownloadError, load_model
from clipdeploy.models import get_spec, list_models
from clipdeploy.models.api import download_hf, resolve_checkpoint
from clipdeploy.models.download import cache_dir, download, parse_hf_url

from httpserver import FileServer, HubServer

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    with FileServer() as s:
        s.files["/w.pt"] = PAYLOAD
        yield s


def test_success_goes_to_cache_and_is_reused(server, tmp_path):
    p = download(server.base + "/w.pt", sha256=SHA, progress=False)
    assert p.read_bytes() == PAYLOAD
    assert str(p).startswith(str(cache_dir())) and cache_dir() == tmp_path / "cache"
    assert not list(p.parent.glob("*.part"))
    n = len(server.requests)
    assert download(server.base + "/w.pt", sha256=SHA, progress=False) == p
    assert len(server.requests) == n  # verified cache hit: no request


def test_interrupted_transfer_resumes_with_range(server):
    server.drop_after["/w.pt"] = (1024 * 1024, 1)
    p = download(server.base + "/w.pt", sha256=SHA, progress=False)
    assert p.read_bytes() == PAYLOAD
    assert server.requests[0][1] is None
    assert server.requests[1][1] == f"bytes={1024 * 1024}-"


def test_server_without_range_support_restarts_cleanly(server):
    server.drop_after["/w.pt"] = (500_000, 1)
    server.ignore_range.add("/w.pt")
    p = download(server.base + "/w.pt", sha256=SHA, progress=False)
    assert p.read_bytes() == PAYLOAD  # the 200 reply replaced the partial file, not appended to it


def test_gives_up_after_retries_and_keeps_part_for_resume(server):
    server.drop_after["/w.pt"] = (1000, 10)
    with pytest.raises(DownloadError, match="failed after 2 attempts.*run again to resume"):
        download(server.base + "/w.pt", sha256=SHA, progress=False, retries=2)
    part = next(cache_dir().rglob("w.pt.part"))
    assert 0 < part.stat().st_size < len(PAYLOAD)
    server.drop_after.clear()
    assert download(server.base + "/w.pt", sha256=SHA, progress=False).read_bytes() == PAYLOAD


def test_checksum_mismatch_removes_the_file(server):
    bad = "0" * 64
    with pytest.raises(DownloadError) as e:
        download(server.base + "/w.pt", sha256=bad, progress=False)
    msg = str(e.value)
    assert "checksum mismatch" in msg and SHA in msg and "removed" in msg and "\n" not in msg
    assert not [p for p in cache_dir().rglob("*") if p.is_file()]


def test_unreachable_server_suggests_offline_options():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(DownloadError) as e:
        download(f"http://127.0.0.1:{port}/w.pt", progress=False)
    msg = str(e.value)
    assert "cannot reach" in msg and "--checkpoint" in msg and "--random-weights" in msg


def test_http_404(server):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.base + "/nope.pt", progress=False)


def test_load_model_from_url(server, tmp_path, seeded_model):
    m = seeded_model("mobileclip_s0")
    torch.save(m.state_dict("apple"), tmp_path / "s0.pt")
    data = (tmp_path / "s0.pt").read_bytes()
    server.files["/mobileclip_s0.pt"] = data
    sha = hashlib.sha256(data).hexdigest()
    m2 = load_model("mobileclip_s0", checkpoint=server.base + "/mobileclip_s0.pt", sha256=sha,
                    progress=False)
    assert m2.checkpoint_sha256 == sha and m2.layout == "apple"
    x = torch.rand(1, 3, 256, 256)
    assert torch.equal(m.encode_image(x), m2.encode_image(x))


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


# --- Hugging Face files through huggingface_hub --------------------------------------------------------

MC2 = "mobileclip2_s2"                       # an _hf() checkpoint with a pinned sha256
MC2_REPO, MC2_FILE = "timm/MobileCLIP2-S2-OpenCLIP", "open_clip_pytorch_model.bin"


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    """A clean Hugging Face environment: temporary cache and home, no token, not offline."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "hf-cache"


@pytest.fixture
def hub(hf_env, monkeypatch):
    with HubServer() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)   # set after huggingface_hub was imported
        h.add(MC2_REPO, MC2_FILE, PAYLOAD)
        yield h


def _pinned(name, sha):
    spec = get_spec(name)
    return dataclasses.replace(spec, checkpoint=dataclasses.replace(spec.checkpoint, sha256=sha))


def _cache_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file() and ".locks" not in p.parts)


def test_registry_routes_only_hugging_face_urls_to_the_hub():
    hub_files = {n: parse_hf_url(get_spec(n).checkpoint.url) for n in list_models()}
    assert hub_files[MC2] == (MC2_REPO, "main", MC2_FILE)
    assert hub_files["tinyclip_vit_8m_16_text_3m"] == (
        "wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M", "main", "pytorch_model.bin")
    for n in ("mobileclip_s0", "mobileclip_blt", "openai_vit_b32", "tinyclip_resnet_19m_text_19m"):
        assert hub_files[n] is None, n    # Apple's CDN, OpenAI's azureedge, GitHub: the own downloader
    assert parse_hf_url("https://hf.co/a/b/resolve/v1.0/sub/f.bin") == ("a/b", "v1.0", "sub/f.bin")
    assert parse_hf_url("https://huggingface.co/a/b/blob/main/f.bin") is None


def test_hub_download_into_the_hf_cache_checks_the_pinned_sha256(hub, hf_env, capsys):
    spec = _pinned(MC2, SHA)
    p = resolve_checkpoint(spec, None, progress=True)
    assert p == hf_env / "models--timm--MobileCLIP2-S2-OpenCLIP" / "snapshots" / hub.commit / MC2_FILE
    assert p.read_bytes() == PAYLOAD and os.path.basename(os.path.realpath(p)) == SHA   # LFS blob
    assert not cache_dir().exists()           # nothing in the toolkit's own cache
    err = capsys.readouterr().err
    assert f"download {MC2_FILE}" in err and "warning" not in err     # our bar, sha256 pinned
    bars = [seg for seg in re.split(r"[\r\n]", err) if "B/s" in seg or "%|" in seg]
    assert bars and all(seg.strip().startswith(f"download {MC2_FILE}") for seg in bars)   # and only ours
    # HEAD on the Hub (redirected to the CDN, another origin), then one GET of the blob there
    assert [(r[0], r[1]) for r in hub.requests] == [("hub", "HEAD"), ("cdn", "GET")]
    assert hub.requests[0][2] == f"/{MC2_REPO}/resolve/main/{MC2_FILE}"
    # a second call finds the file in the cache: one metadata HEAD, no transfer
    assert resolve_checkpoint(spec, None, progress=False) == p
    assert [(r[0], r[1]) for r in hub.requests[2:]] == [("hub", "HEAD")]


def test_hub_checksum_mismatch_is_one_line_and_removes_the_file(hub, hf_env, monkeypatch):
    spec = get_spec(MC2)                      # the registry's real sha256: the served payload differs
    with pytest.raises(DownloadError) as e:
        resolve_checkpoint(spec, None, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"checksum mismatch for {MC2_REPO}/{MC2_FILE}")
    assert spec.checkpoint.sha256 in msg and SHA in msg and "removed" in msg and "Run again" in msg
    repo_dir = hf_env / "models--timm--MobileCLIP2-S2-OpenCLIP"
    assert _cache_files(repo_dir) == [repo_dir / "refs" / "main"]     # no blob, no snapshot entry
    # nothing is left for a later (offline) load to trust
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE is set"):
        resolve_checkpoint(spec, None, progress=False)


def test_offline_and_unreachable_hub_are_served_from_the_cache(hub, hf_env, monkeypatch):
    spec = _pinned(MC2, SHA)
    p = resolve_checkpoint(spec, None, progress=False)
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = len(hub.requests)
    assert resolve_checkpoint(spec, None, progress=False) == p and p.read_bytes() == PAYLOAD
    monkeypatch.delenv("HF_HUB_OFFLINE")      # not offline, but the endpoint is down: the cache still serves
    assert resolve_checkpoint(spec, None, progress=False) == p
    assert len(hub.requests) == n


def test_offline_and_not_cached_is_one_line(hf_env, monkeypatch):
    with HubServer() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(DownloadError) as e:
            resolve_checkpoint(get_spec(MC2), None, progress=False)
        assert h.requests == []               # offline: no request at all
    msg = str(e.value)
    assert msg.startswith(f"HF_HUB_OFFLINE is set and {MC2_REPO}/{MC2_FILE} is not in the Hugging Face "
                          f"cache {hf_env}: ")
    assert "--checkpoint" in msg and "\n" not in msg


def test_hf_token_is_sent_as_bearer_and_a_gated_repo_without_it_is_one_line(hub, hf_env, monkeypatch):
    hub.gated[MC2_REPO] = "hf_secret"
    spec = _pinned(MC2, SHA)
    with pytest.raises(DownloadError) as e:
        resolve_checkpoint(spec, None, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "HTTP 401" in msg and "gated" in msg and "HF_TOKEN" in msg
    assert f"HF_ENDPOINT={hub.endpoint}" in msg and "no token was sent" in msg
    assert "Authorization" not in hub.requests[-1][3]

    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(DownloadError, match=r"HTTP 403.*token that was sent \(HF_TOKEN\) has no access"):
        resolve_checkpoint(spec, None, progress=False)

    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    hub.requests.clear()
    p = resolve_checkpoint(spec, None, progress=False)
    assert p.read_bytes() == PAYLOAD
    head, get = hub.requests
    assert head[:2] == ("hub", "HEAD") and head[3]["Authorization"] == "Bearer hf_secret"
    assert get[:2] == ("cdn", "GET") and "Authorization" not in get[3]   # the token never leaves the Hub


def test_hub_404_is_one_line_naming_the_endpoint(hub):
    spec = get_spec(MC2)
    spec = dataclasses.replace(spec, checkpoint=dataclasses.replace(
        spec.checkpoint, url=f"https://huggingface.co/{MC2_REPO}/resolve/main/missing.bin"))
    with pytest.raises(DownloadError) as e:
        resolve_checkpoint(spec, None, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "HTTP 404, no such file" in msg and f"HF_ENDPOINT={hub.endpoint}" in msg


def test_an_endpoint_that_is_not_a_hub_is_one_line(server, hf_env, monkeypatch):
    """HF_ENDPOINT at a plain file server: it answers, but without the Hub's X-Repo-Commit/ETag headers."""
    server.files[f"/{MC2_REPO}/resolve/main/{MC2_FILE}"] = PAYLOAD
    monkeypatch.setenv("HF_ENDPOINT", server.base)
    with pytest.raises(DownloadError) as e:
        resolve_checkpoint(get_spec(MC2), None, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and f"HF_ENDPOINT={server.base} did not answer" in msg and "Hub mirror" in msg


def test_unreachable_endpoint_is_one_line_naming_hf_endpoint(hf_env, monkeypatch):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as e:
        resolve_checkpoint(get_spec(MC2), None, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"cannot reach the Hugging Face Hub at HF_ENDPOINT={endpoint}")
    assert "not in the Hugging Face cache" in msg and "--random-weights" in msg
    assert time.monotonic() - t0 < 60          # huggingface_hub's own retries (backoff up to ~25 s)


def test_hugging_face_clipmodel_weights_and_config_land_in_one_snapshot(hf_env, monkeypatch, tmp_path):
    """A HF CLIPModel checkpoint (TinyCLIP's published form) is two files, the weights (LFS) and the
    config.json extra (a git file): both come through the hub into one snapshot of the HF cache, which then
    loads as the model, also offline."""
    name = "tinyclip_vit_8m_16_text_3m"
    spec = get_spec(name)
    repo = spec.checkpoint.repo
    m = load_model(name, random_weights=2)
    m.module.save_pretrained(tmp_path / "repo")                    # config.json (+ model.safetensors)
    torch.save(m.module.state_dict(), tmp_path / "repo" / "pytorch_model.bin")   # the registry's file
    weights = (tmp_path / "repo" / "pytorch_model.bin").read_bytes()
    with HubServer() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        h.add(repo, "pytorch_model.bin", weights, lfs=True)
        h.add(repo, "config.json", (tmp_path / "repo" / "config.json").read_bytes(), lfs=False)
        m2 = load_model(name, progress=False)
        d = hf_env / ("models--" + repo.replace("/", "--")) / "snapshots" / h.commit
        assert sorted(p.name for p in d.iterdir()) == ["config.json", "pytorch_model.bin"]
        heads = [r[2] for r in h.hub_requests("HEAD")]
        assert heads == [f"/{repo}/resolve/main/pytorch_model.bin",
                         f"/{repo}/resolve/{h.commit}/config.json"]   # the extra at the weights' commit
    x = torch.rand(1, 3, 224, 224)
    assert m2.layout == "hf" and torch.equal(m2.encode_image(x), m.encode_image(x))
    assert m2.checkpoint_sha256 == hashlib.sha256(weights).hexdigest()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert download_hf(spec.checkpoint, progress=False) == d


def test_hugging_face_dir_from_a_non_hub_url_keeps_the_own_downloader(tmp_path):
    """A Checkpoint whose URLs are not Hub URLs (a plain file server) still downloads both files into one
    folder of the toolkit's cache; a second call is served from that cache."""
    m = load_model("tinyclip_vit_8m_16_text_3m", random_weights=2)
    m.module.save_pretrained(tmp_path / "repo")
    spec = get_spec("tinyclip_vit_8m_16_text_3m")
    with FileServer() as s:
        s.files["/repo/config.json"] = (tmp_path / "repo" / "config.json").read_bytes()
        weights = (tmp_path / "repo" / "model.safetensors").read_bytes()
        s.files["/repo/model.safetensors"] = weights
        ck = dataclasses.replace(spec.checkpoint, url=s.base + "/repo/model.safetensors",
                                 filename="model.safetensors", sha256=hashlib.sha256(weights).hexdigest(),
                                 extra=(("config.json", s.base + "/repo/config.json"),))
        d = download_hf(ck, progress=False)
        assert d.parent == cache_dir() / "hf" and sorted(p.name for p in d.iterdir()) == [
            "config.json", "model.safetensors"]
        n = len(s.requests)
        assert download_hf(ck, progress=False) == d and len(s.requests) == n   # cache hit
    m2 = load_model(spec.name, checkpoint=d)
    x = torch.rand(1, 3, 224, 224)
    assert m2.layout == "hf" and torch.equal(m2.encode_image(x), m.encode_image(x))


def test_clip_models_fetch_of_a_hugging_face_dir(hf_env, monkeypatch, tmp_path, capsys):
    from clipdeploy.models.cli import main
    name = "tinyclip_vit_8m_16_text_3m"
    repo = get_spec(name).checkpoint.repo
    cfg = load_model(name, random_weights=1).module.config.to_json_string().encode()
    with HubServer() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        h.add(repo, "pytorch_model.bin", PAYLOAD)
        h.add(repo, "config.json", cfg, lfs=False)
        assert main(["fetch", name]) == 0
    out = capsys.readouterr().out
    assert f"(sha256 {SHA})" in out and str(hf_env) in out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    assert main(["fetch", MC2]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: HF_HUB_OFFLINE is set") and err.count("\n") == 1 and "Traceback" not in err
