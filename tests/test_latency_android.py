"""clip-latency android / ingest: the adb command sequence (a pure function), the report the app writes
(sample in tests/data/latency), and — only where adb is installed — the real adb front end."""
import json
import shutil
from pathlib import Path

import pytest

from clipdeploy.latency.android import (DEFAULT_REPORT, AndroidInputError, build_commands, run_android)
from clipdeploy.latency.cli import main
from clipdeploy.latency.report import validate_report

SAMPLE = Path(__file__).parent / "data" / "latency" / "android_report_sample.json"


def test_adb_command_sequence():
    c = build_commands("out/mobileclip_s0", "mobileclip_s0", adb="/opt/adb", serial="emulator-5554",
                       runtime="executorch", runs=30, warmup=5, threads=4, local_report="/tmp/r.json")
    a = ["/opt/adb", "-s", "emulator-5554"]
    dest = "/data/local/tmp/clipdeploy/mobileclip_s0"
    assert c["state"] == a + ["get-state"]
    assert c["prepare"] == [a + ["shell", f"rm -rf {dest}"], a + ["shell", "mkdir -p /data/local/tmp/clipdeploy"]]
    assert c["push"] == a + ["push", "out/mobileclip_s0", dest]
    assert c["clear"] == a + ["shell", f"rm -f {DEFAULT_REPORT} {DEFAULT_REPORT}.tmp {DEFAULT_REPORT}.error"]
    assert c["stop"] == a + ["shell", "am force-stop org.clipdeploy.app"]     # the next start: a fresh process
    assert c["start"] == a + ["shell", "am start -W -n org.clipdeploy.app/.BenchmarkActivity "
                                       f"--es bundle {dest} --es runtime executorch --ei runs 30 "
                                       f"--ei warmup 5 --ei threads 4 --ef min_seconds 2.0 --ei min_blocks 8 "
                                       f"--es report {DEFAULT_REPORT}"]
    assert c["poll"] == a + ["shell", f"test -f {DEFAULT_REPORT}"]
    assert c["poll_error"] == a + ["shell", f"test -f {DEFAULT_REPORT}.error"]
    assert c["pull"] == a + ["pull", DEFAULT_REPORT, "/tmp/r.json"]


def test_adb_commands_without_serial_and_with_odd_paths():
    c = build_commands("b", "mobileclip_s0", runtime="onnxruntime", report_path="/sdcard/my report.json")
    assert c["state"] == ["adb", "get-state"]
    assert c["poll"] == ["adb", "shell", "test -f '/sdcard/my report.json'"]   # quoted for the device shell
    assert "--es runtime onnxruntime" in c["start"][-1]
    with pytest.raises(AndroidInputError):
        build_commands("b", "mobileclip_s0", runtime="coreml")


def test_adb_start_command_for_litert():
    c = build_commands("out/mobileclip_s0", "mobileclip_s0", adb="adb", runtime="litert", runs=20, warmup=3,
                       threads=2)
    dest = "/data/local/tmp/clipdeploy/mobileclip_s0"
    assert c["start"] == ["adb", "shell", "am start -W -n org.clipdeploy.app/.BenchmarkActivity "
                                          f"--es bundle {dest} --es runtime litert --ei runs 20 --ei warmup 3 "
                                          f"--ei threads 2 --ef min_seconds 2.0 --ei min_blocks 8 "
                                          f"--es report {DEFAULT_REPORT}"]
    assert c["push"] == ["adb", "push", "out/mobileclip_s0", dest]
    # the CLI's --runtime choices come from the same tuple: litert is accepted, an unknown runtime is not
    from clipdeploy.latency.android import RUNTIMES
    from clipdeploy.latency.cli import _parser
    assert "litert" in RUNTIMES
    assert _parser().parse_args(["android", "b", "--runtime", "litert"]).runtime == "litert"
    with pytest.raises(SystemExit):
        _parser().parse_args(["android", "b", "--runtime", "tflite"])
    with pytest.raises(AndroidInputError, match="use executorch, onnxruntime or litert"):
        build_commands("b", "mobileclip_s0", runtime="tflite")


def test_sample_app_report_is_ingested(tmp_path, capsys):
    assert main(["ingest", str(SAMPLE), "--into", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "accepted" in out and "android-app" in out and "executorch-fp32/image_encoder.pte" in out
    stored = list((tmp_path / "mobileclip_s0").glob("*.json"))
    assert len(stored) == 1 and "android-app" in stored[0].name
    rep = validate_report(json.loads(stored[0].read_text()))
    assert [r["id"] for r in rep["records"]][0] == "executorch-fp32/image_encoder.pte@executorch"
    assert rep["records"][0]["steady"]["stats"]["p90"] == pytest.approx(14.88)   # recomputed
    # and it can be compared like any other report: one process of one block is too little for the
    # latency gate (exit 3, insufficient data), never a regression
    assert main(["compare", str(SAMPLE), str(stored[0])]) == 3
    out = capsys.readouterr().out
    assert "insufficient data" in out and "REGRESSION" not in out


def test_broken_app_report_is_rejected(tmp_path, capsys):
    rep = json.loads(SAMPLE.read_text())
    del rep["records"][0]["parity"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rep))
    assert main(["ingest", str(bad), str(SAMPLE), "--into", str(tmp_path / "s")]) == 2
    cap = capsys.readouterr()
    assert cap.err.count("error: ") == 1 and "parity" in cap.err
    assert "accepted" in cap.out          # the valid one is still stored
    assert len(list((tmp_path / "s" / "mobileclip_s0").glob("*.json"))) == 1


def test_android_without_adb_is_bad_input(tmp_path, capsys):
    assert main(["android", str(tmp_path), "--adb", str(tmp_path / "no-adb-here")]) == 2
    assert capsys.readouterr().err.startswith("error: adb not found")


@pytest.mark.skipif(shutil.which("adb") is None, reason="adb is not on the PATH (make test installs it: make adb-deps)")
def test_real_adb_front_end(tmp_path):
    """With a real adb: no device attached must be a clear input error; with one, a full run."""
    bundle = tmp_path / "mobileclip_s0"
    shutil.copytree(Path(__file__).resolve().parent.parent / "goldens" / "bundle", bundle)   # a valid bundle
    import subprocess
    state = subprocess.run(["adb", "get-state"], capture_output=True, text=True, timeout=60)
    if state.stdout.strip() != "device":
        with pytest.raises(AndroidInputError, match="no device"):
            run_android(bundle, runtime="executorch", runs=3, warmup=1, timeout=60, log=lambda *a: None)
    else:  # pragma: no cover - needs a phone with the app installed
        pytest.skip("a device is attached: run `clip-latency android out/mobileclip_s0` by hand")
