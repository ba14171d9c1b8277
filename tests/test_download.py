"""Weight download against a real HTTP server on 127.0.0.1."""
import hashlib
import os
import socket

import pytest
import torch

from clipdeploy.models import DownloadError, load_model
from clipdeploy.models.download import cache_dir, download

from httpserver import FileServer

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


def test_hugging_face_model_downloads_config_and_weights_into_one_folder(tmp_path):
    """A HF CLIPModel checkpoint (TinyCLIP's published form) is two files: both land in one cache
    folder that then loads as the model; a second call is served from the cache."""
    import dataclasses
    import io
    from clipdeploy.models import get_spec
    from clipdeploy.models.api import download_hf
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
    assert m2.checkpoint_sha256 == hashlib.sha256(weights).hexdigest()
