"""A bundle and a device report are untrusted input (issue 22): the integrity record, path safety, the
.npy and JSON readers, report ranges and the single atomic store, on copies of the miniature golden
bundle (real layout, real files). The same cases on an exported S0 bundle through the CLIs are in
test_export_cli.py; the fuzzed readers in test_fuzz.py."""
import hashlib
import json
import math
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from clipdeploy.latency import integrity, safejson
from clipdeploy.latency.bundle import Bundle, BundleError, parse_tokenizer_files
from clipdeploy.latency.ingest import ingest_one
from clipdeploy.latency.npyfile import NpyError, loads_npy, read_npy
from clipdeploy.latency.report import ReportError, load_report

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "goldens" / "bundle"
REPORT = ROOT / "goldens" / "report_sample.json"


@pytest.fixture
def copy(tmp_path):
    dest = tmp_path / "bundle"
    shutil.copytree(GOLDEN, dest)
    return dest


def _manifest(b):
    return json.loads((b / "manifest.json").read_text())


def _write_manifest(b, m):
    (b / "manifest.json").write_text(json.dumps(m))


def _flip(p: Path, at: float = 0.5):
    data = bytearray(p.read_bytes())
    data[int(len(data) * at)] ^= 0x40
    p.write_bytes(bytes(data))


def test_the_record_lists_every_file_with_its_digest():
    m = _manifest(GOLDEN)
    files = m["integrity"]["files"]
    on_disk = sorted(p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*") if p.is_file())
    assert sorted(files) == [f for f in on_disk if f != "manifest.json"]
    for rel, ent in files.items():
        data = (GOLDEN / rel).read_bytes()
        assert ent == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    b = Bundle(GOLDEN)
    figs = b.verify_all(use_cache=False)
    assert figs["files"] == len(files) and figs["hashed_bytes"] == figs["bytes"] > 1_000_000


@pytest.mark.parametrize("rel", ["probe/images.npy", "reference-fp32/image_encoder.npy", "tokenizer/vocab.json",
                                 "probe/captions.json"])
def test_a_modified_file_is_refused_before_it_is_read(copy, rel):
    _flip(copy / rel, 0.9)
    b = Bundle(copy)                          # same size: the open-time stat pass cannot tell
    with pytest.raises(BundleError, match=rf"{rel} does not match the manifest \(sha256"):
        b.verify_all()
    if rel.startswith("probe/images"):
        with pytest.raises(BundleError, match="does not match the manifest"):
            Bundle(copy).probe()
    if rel.startswith("tokenizer"):
        with pytest.raises(BundleError, match="does not match the manifest"):
            Bundle(copy).tokenizer_files()
    if rel.startswith("reference"):
        art = next(a for a in Bundle(copy).artifacts() if a.path == rel)
        with pytest.raises(BundleError, match="does not match the manifest"):
            Bundle(copy).verify_artifact(art)


def test_a_truncated_or_missing_file_makes_the_bundle_incomplete(copy):
    p = copy / "probe" / "token_ids.npy"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(BundleError, match=r"is incomplete: probe/token_ids.npy is \d+ bytes, the manifest records"):
        Bundle(copy)
    p.unlink()
    with pytest.raises(BundleError, match="is incomplete: probe/token_ids.npy is missing"):
        Bundle(copy)


@pytest.mark.parametrize("bad,why", [("../outside.npy", "contains '..'"), ("/etc/passwd", "is absolute"),
                                     ("reference-fp32/../../x.npy", "contains '..'"),
                                     ("C:/x.npy", "is absolute"), ("reference-fp32\\x.npy", "backslash"),
                                     ("reference-fp32//x.npy", "empty or '.'"), ("./x.npy", "empty or '.'")])
def test_a_manifest_path_leaving_the_bundle_is_refused(copy, bad, why):
    (copy.parent / "outside.npy").write_bytes((copy / "reference-fp32" / "image_encoder.npy").read_bytes())
    m = _manifest(copy)
    m["artifacts"][0]["path"] = bad
    m["artifacts"][0]["files"] = [bad]
    _write_manifest(copy, m)
    with pytest.raises(BundleError, match=rf"manifest path .* {why}"):
        Bundle(copy)
    m = _manifest(GOLDEN)                    # the same in the integrity record itself
    m["integrity"]["files"][bad] = m["integrity"]["files"].pop("probe/images.npy")
    _write_manifest(copy, m)
    with pytest.raises(BundleError, match=why):
        Bundle(copy)


def test_a_symlink_out_of_the_bundle_is_refused(copy, tmp_path):
    outside = tmp_path / "elsewhere.npy"
    shutil.copy(copy / "reference-fp32" / "text_encoder.npy", outside)
    (copy / "reference-fp32" / "text_encoder.npy").unlink()
    os.symlink(outside, copy / "reference-fp32" / "text_encoder.npy")   # same bytes, same digest
    with pytest.raises(BundleError, match=r"'reference-fp32/text_encoder.npy' resolves outside the bundle"):
        Bundle(copy)
    # a symlinked directory out is refused too
    (tmp_path / "tok").mkdir()
    shutil.move(str(copy / "tokenizer"), str(tmp_path / "tok" / "tokenizer"))
    os.symlink(tmp_path / "tok" / "tokenizer", copy / "tokenizer")
    os.unlink(copy / "reference-fp32" / "text_encoder.npy")
    shutil.copy(outside, copy / "reference-fp32" / "text_encoder.npy")
    with pytest.raises(BundleError, match="resolves outside the bundle"):
        Bundle(copy)


def test_a_symlink_inside_the_bundle_is_accepted(copy):
    """Links that stay inside are how some copy tools deduplicate; only leaving the bundle is refused."""
    shutil.copy(copy / "probe" / "images.npy", copy / "images.copy")
    (copy / "probe" / "images.npy").unlink()
    os.symlink("../images.copy", copy / "probe" / "images.npy")
    m = _manifest(copy)
    m["integrity"]["files"]["images.copy"] = m["integrity"]["files"]["probe/images.npy"]
    _write_manifest(copy, m)
    assert Bundle(copy).probe()["image"].shape == (6, 3, 32, 32)


@pytest.mark.parametrize("text", ["{not json", "", '{"schema_version": 2, "artifacts": [', "[]", "null",
                                  '{"schema_version": NaN, "artifacts": []}', "[" * 100000])
def test_a_manifest_that_is_not_json_is_refused(copy, text):
    (copy / "manifest.json").write_text(text)
    with pytest.raises(BundleError) as e:
        Bundle(copy)
    assert "\n" not in str(e.value) and "manifest" in str(e.value)


@pytest.mark.parametrize("edit,where", [
    (lambda m: m.update(schema_version=1), "schema_version 1 is not supported (it has no integrity record)"),
    (lambda m: m.pop("integrity"), "'integrity' is a required property"),
    (lambda m: m["artifacts"][0].update(path=5), "at artifacts/0/path"),
    (lambda m: m["artifacts"][0].update(encoder="audio"), "at artifacts/0/encoder"),
    (lambda m: m["probe"].update(images=["probe/images.npy"]), "at probe/images"),
    (lambda m: m.update(logit_scale="100"), "at logit_scale"),
    (lambda m: m["integrity"]["files"]["probe/images.npy"].update(sha256="abc"), "integrity/files/probe/images.npy/sha256"),
    (lambda m: m["integrity"]["files"]["probe/images.npy"].update(size=-1), "size"),
    (lambda m: m["integrity"].update(algorithm="md5"), "integrity/algorithm"),
    (lambda m: m["integrity"]["files"].pop("probe/images.npy"), "probe/images.npy is named by the manifest but has no integrity record"),
    (lambda m: m["integrity"]["files"].update({"manifest.json": {"size": 1, "sha256": "0" * 64}}), "lists manifest.json itself"),
])
def test_a_manifest_that_fails_the_schema_is_refused(copy, edit, where):
    m = _manifest(copy)
    edit(m)
    _write_manifest(copy, m)
    with pytest.raises(BundleError, match=where.replace("(", r"\(").replace(")", r"\)")):
        Bundle(copy)


def test_an_unlisted_file_inside_a_directory_artifact_is_refused(copy):
    """An .mlpackage is a directory: Core ML reads whatever is in it, so nothing unlisted may be."""
    pkg = copy / "coreml-fp16" / "image_encoder.mlpackage"
    (pkg / "Data" / "weights").mkdir(parents=True)
    (pkg / "Data" / "weights" / "weight.bin").write_bytes(os.urandom(4096))
    (pkg / "Manifest.json").write_text("{}")
    m = _manifest(copy)
    m["artifacts"].append({**m["artifacts"][0], "target": "coreml", "precision": "fp16",
                           "path": "coreml-fp16/image_encoder.mlpackage",
                           "files": ["coreml-fp16/image_encoder.mlpackage"]})
    m["integrity"] = integrity.record(copy)
    _write_manifest(copy, m)
    b = Bundle(copy)
    art = b.artifacts()[-1]
    assert b.verify_artifact(art).name == "image_encoder.mlpackage"
    _flip(pkg / "Data" / "weights" / "weight.bin")
    with pytest.raises(BundleError, match="image_encoder.mlpackage/Data/weights/weight.bin does not match"):
        Bundle(copy).verify_artifact(art)
    m["integrity"] = integrity.record(copy)
    _write_manifest(copy, m)
    (pkg / "Data" / "extra.bin").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"Data/extra.bin is not in the manifest's integrity record"):
        Bundle(copy).verify_artifact(art)


def test_verified_digests_are_cached_until_the_file_changes(copy):
    b = Bundle(copy)
    first = b.verify_all()
    assert first["hashed_bytes"] == first["bytes"] and first["cached_files"] == 0
    again = Bundle(copy).verify_all()
    assert again["hashed_bytes"] == 0 and again["cached_files"] == again["files"]
    # a same-size edit with the mtime put back is still seen (the ctime moved)
    p = copy / "reference-fp32" / "image_encoder.npy"
    st = p.stat()
    _flip(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(BundleError, match="image_encoder.npy does not match"):
        Bundle(copy).verify_all()


# ---------------------------------------------------------------------------------------------------
# .npy

def _npy_bytes(arr):
    import io
    f = io.BytesIO()
    np.save(f, arr)
    return f.getvalue()


def _header(descr="<f4", shape="(2, 3)", fortran="False", major=1):
    h = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}".encode()
    h += b" " * (63 - len(h) % 64) + b"\n"
    return b"\x93NUMPY" + bytes([major, 0]) + (struct.pack("<H", len(h)) if major == 1 else struct.pack("<I", len(h))) + h


def test_npy_reader_matches_numpy_on_good_files(tmp_path):
    for arr in (np.arange(12, dtype=np.float32).reshape(3, 4), np.zeros((0, 5), np.int32),
                np.array(3.5, np.float64), np.arange(7, dtype=np.int64)):
        np.save(tmp_path / "a.npy", arr)
        got = read_npy(tmp_path / "a.npy")
        assert got.dtype == arr.dtype and got.shape == arr.shape and np.array_equal(got, arr)


@pytest.mark.parametrize("data,why", [
    (_npy_bytes(np.ones((4, 4), np.float32))[:-1], "truncated"),
    (_npy_bytes(np.ones((4, 4), np.float32)) + b"\0", "trailing bytes"),
    (_npy_bytes(np.ones((4, 4), np.float32))[:40], "truncated"),
    (_header(shape="(2147483647, 2147483647)") + b"\0" * 24, "truncated"),
    (_header(shape="(9223372036854775807, 9223372036854775807, 9223372036854775807)"), "truncated"),
    (_header(shape="(-1, 3)") + b"\0" * 24, "non-negative ints"),
    (_header(shape="(2.0, 3)") + b"\0" * 24, "non-negative ints"),
    (_header(descr="|O") + b"\0" * 48, "dtype '|O' is not supported"),
    (_header(descr=">f4") + b"\0" * 24, "dtype '>f4' is not supported"),
    (_header(fortran="True") + b"\0" * 24, "Fortran order"),
    (_header(major=9) + b"\0" * 24, "version 9"),
    (b"\x93NUMPY\x01\x00\xff\xff{'descr'", "truncated .npy header"),
    (b"\x93NUMPY\x01\x00\x10\x00" + b"(" * 16, "not a Python dict literal"),
    (b"PK\x03\x04not an npy", "magic"),
    (_header(shape="(" + "1, " * 40 + ")") + b"\0" * 4, "at most 32"),
])
def test_npy_reader_refuses_bad_files_without_allocating(tmp_path, data, why):
    with pytest.raises(NpyError, match=why.replace("(", r"\(").replace("|", r"\|")):
        loads_npy(data)
    (tmp_path / "x.npy").write_bytes(data)
    with pytest.raises(NpyError, match=why.replace("(", r"\(").replace("|", r"\|")):
        read_npy(tmp_path / "x.npy")


def test_a_consistent_but_malformed_probe_array_is_refused(copy):
    """Digests re-recorded over a bad .npy (a tool that rewrote the manifest): the reader still refuses."""
    p = copy / "probe" / "images.npy"
    p.write_bytes(p.read_bytes()[:-100])
    m = _manifest(copy)
    m["integrity"] = integrity.record(copy)
    _write_manifest(copy, m)
    with pytest.raises(BundleError, match=r"cannot read probe file .*images.npy: .npy file is truncated"):
        Bundle(copy).probe()
    np.save(p, np.zeros((6, 3, 32, 31), np.float32))
    m["integrity"] = integrity.record(copy)
    _write_manifest(copy, m)
    with pytest.raises(BundleError, match="probe arrays do not fit together"):
        Bundle(copy).probe()


# ---------------------------------------------------------------------------------------------------
# JSON, tokenizer files

@pytest.mark.parametrize("text,why", [("NaN", "NaN is not JSON"), ('{"a": Infinity}', "Infinity is not JSON"),
                                      ('[1e999]', "out of range"), ("[" * 50000, "nested too deeply"),
                                      ('{"a": 1} x', "Extra data"), (b"\xff\xfe", "not UTF-8")])
def test_strict_json(text, why):
    with pytest.raises(ValueError, match=why):
        safejson.loads(text)


def test_tokenizer_files_are_checked():
    vocab = (GOLDEN / "tokenizer" / "vocab.json").read_bytes()
    merges = (GOLDEN / "tokenizer" / "merges.txt").read_bytes()
    t = parse_tokenizer_files(vocab, merges, 49408, 48894)
    assert t["vocab"]["<|endoftext|>"] == 49407 and len(t["merges"]) == 48894
    for v, m, why in [(b'{"a": 0, "b": 0}', merges[:100], "one id to two tokens"),
                      (b'{"a": -1}', merges[:100], "is not an id"), (b'["a"]', merges[:100], "not a non-empty"),
                      (vocab, b"no header\n", "#version"), (vocab, b"#version: 0.2\na b c\n", "line 2"),
                      (vocab, b"\n".join(merges.split(b"\n")[:5000]), "the manifest says 48894")]:
        with pytest.raises(ValueError, match=why):
            parse_tokenizer_files(v, m, 49408, 48894)


# ---------------------------------------------------------------------------------------------------
# device reports

def _report():
    return json.loads(REPORT.read_text())


def _ok_record(rep):
    return next(r for r in rep["records"] if r["status"] == "ok")


@pytest.mark.parametrize("edit,why", [
    (lambda r: _ok_record(r)["steady"]["samples_ms"].__setitem__(0, -3.0), "samples_ms/0"),
    (lambda r: _ok_record(r)["steady"]["samples_ms"].__setitem__(0, 0.0), "samples_ms/0"),
    (lambda r: _ok_record(r)["steady"]["samples_ms"].__setitem__(0, 1e12), "samples_ms/0"),
    (lambda r: _ok_record(r)["parity"].update(cosine_min=2.0), "cosine_min"),
    (lambda r: _ok_record(r)["parity"].update(max_abs=-1.0), "max_abs"),
])
def test_ingest_refuses_out_of_range_reports(tmp_path, edit, why):
    rep = _report()
    edit(rep)
    (tmp_path / "r.json").write_text(json.dumps(rep))
    with pytest.raises(ReportError, match=why):
        ingest_one(tmp_path / "r.json", str(tmp_path / "store"))
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("text,why", [
    (lambda t: t.replace("[", "[NaN, ", 1), "NaN is not JSON"),
    (lambda t: t[: len(t) // 2], "incomplete: copied while it was being written"),
    (lambda t: "", "incomplete"),
])
def test_ingest_refuses_non_json_and_cut_reports(tmp_path, text, why):
    (tmp_path / "r.json").write_text(text(REPORT.read_text()))
    with pytest.raises(ReportError, match=why):
        ingest_one(tmp_path / "r.json", str(tmp_path / "store"))


def test_ingest_refuses_huge_reports_before_reading(tmp_path):
    p = tmp_path / "big.json"
    with open(p, "wb") as f:
        f.truncate(64 << 20)                 # sparse: the size is refused, nothing read
    with pytest.raises(ReportError, match="more than the 33554432 this reader accepts"):
        ingest_one(p, str(tmp_path / "store"))


def test_ingest_stores_a_report_once_and_atomically(tmp_path):
    store = tmp_path / "store"
    rep1, d1 = ingest_one(REPORT, str(store))
    rep2, d2 = ingest_one(REPORT, str(store))
    assert d1 == d2 and d1.exists() and rep2["ingested"]["already_stored"]
    files = list(d1.parent.iterdir())
    assert files == [d1]                      # no duplicate, no temporary file left
    assert load_report(d1)["records"] == rep1["records"]
    # a different report of the same device and time is stored beside it, not over it
    other = _report()
    _ok_record(other)["steady"]["samples_ms"][0] *= 1.5
    (tmp_path / "other.json").write_text(json.dumps(other))
    _, d3 = ingest_one(tmp_path / "other.json", str(store))
    assert d3 != d1 and sorted(d1.parent.iterdir()) == sorted([d1, d3])
