"""``clef inspect`` as a user runs it: a subprocess, JSON lines, one error line, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from clef.synthetic.recordings import eeg_signals, make_edf

REQUIRED = {"path", "ok", "error", "format", "duration_s", "sfreq_in", "channels", "annotations", "deid", "warnings"}


def _clef(*args, env=None):
    return subprocess.run([sys.executable, "-m", "clef", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_inspect_json_good_and_bad_files(tmp_path):
    good = make_edf(tmp_path / "good.edf", eeg_signals(12, 256, style="Ref"), fmt="EDF+C",
                    patient="MRN42 M 01-JAN-1980 John_Roe", annotations=[(1.0, None, "eyes open")])
    bad = tmp_path / "bad.edf"
    bad.write_bytes(b"")
    r = _clef("inspect", "--json", str(good), str(bad), str(tmp_path / "absent.edf"))
    assert r.returncode == 1
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert len(lines) == 3 and all(REQUIRED <= set(x) for x in lines)
    g, b, a = lines
    assert g["ok"] and g["error"] is None and g["format"] == "EDF+C" and g["sfreq_in"] == 256
    assert g["channels"]["mapped"]["Fp1"] == "EEG Fp1-Ref" and g["channels"]["missing"] == []
    assert g["annotations"] == 1 and g["deid"]["sex"] == "M" and g["deid"]["age_years"] == 40.0
    assert "John_Roe" not in r.stdout and "MRN42" not in r.stdout
    assert not b["ok"] and "0 bytes" in b["error"] and not a["ok"] and "no such file" in a["error"]
    assert "Traceback" not in r.stderr and len([x for x in r.stderr.splitlines() if "error:" in x]) == 2


def test_inspect_human_output_and_plot(tmp_path):
    good = make_edf(tmp_path / "g.edf", eeg_signals(12, 500, style="bare", new_names=True))
    png = tmp_path / "page.png"
    r = _clef("inspect", str(good), "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert "EDF+C" in r.stdout and "T3 ← T7" in r.stdout
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_cli_error_is_one_line_without_traceback(tmp_path):
    d = tmp_path / "folder.edf"
    d.mkdir()
    r = _clef("inspect", str(d))
    assert r.returncode == 1 and "found a directory" in r.stderr and "Traceback" not in r.stderr
