"""Long recordings of the synthetic hospital (issue 19): EDF files of hours whose state
changes at a known time (a seizure cluster, burst-suppression onset, an evolving
encephalopathy) or does not, written a segment at a time, with their truth.

The recordings here last 0.2 h in 2-minute segments; what is checked is what a trend
check relies on: valid files of the right length that the platform reads, and a truth
onset where the signal changes."""

from __future__ import annotations

import csv
import tracemalloc
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import signal
from typer.testing import CliRunner

from clef.cli import app
from clef.synthetic.hospital import load_truth
from clef.synthetic.long import KINDS, LongRecordingConfig, plan_recording, synthesize_long_recordings
from tokenizer import Recording, SignalContract, read_header, read_recording
from tokenizer.multitaper import CANONICAL_BANDS, band_power_from_psd

CONTRACT = SignalContract()
HOURS = 0.2
CONFIG = LongRecordingConfig(segment_s=120, cluster_window_s=(360, 360), ramp_s=240)


@pytest.fixture(scope="module")
def long_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("long")
    synthesize_long_recordings(out, 4, hours=HOURS, seed=3, config=CONFIG, workers=1)
    return out


@pytest.fixture(scope="module")
def recordings(long_set: Path) -> dict[str, tuple[dict, Recording]]:
    """``{kind: (truth row, the recording read by the platform's reader)}``."""
    return {row["kind"]: (row, read_recording(long_set / row["path"], CONTRACT))
            for row in load_truth(long_set).iter_rows(named=True)}


def _span(rec: Recording, a: float, b: float, channels: tuple[str, ...] = ()) -> np.ndarray:
    """Seconds ``[a, b)`` of the recording (some channels, default all)."""
    rows = [CONTRACT.channels.index(c) for c in channels] or slice(None)
    return rec.data[rows, int(a * rec.sfreq) : int(b * rec.sfreq)]


def _bands(x: np.ndarray) -> dict[str, float]:
    """Mean band power over channels (µV²/Hz), from a Welch spectrum."""
    f, psd = signal.welch(x, fs=CONTRACT.sfreq, nperseg=int(4 * CONTRACT.sfreq))
    return {k: float(v.mean()) for k, v in band_power_from_psd(psd, f, CANONICAL_BANDS).items()}


def _suppressed(x: np.ndarray) -> float:
    """Fraction of half seconds whose RMS, averaged over channels, is below 10 µV."""
    n = x.shape[1] // int(CONTRACT.sfreq / 2) * int(CONTRACT.sfreq / 2)
    rms = np.sqrt((x[:, :n].reshape(x.shape[0], -1, int(CONTRACT.sfreq / 2)) ** 2).mean(axis=2)).mean(axis=0)
    return float((rms < 10.0).mean())


def test_long_recordings_are_edf_files_of_their_length_with_their_truth(long_set: Path,
                                                                        recordings: dict) -> None:
    truth = load_truth(long_set)
    assert sorted(truth["kind"]) == sorted(KINDS) and truth["session_id"].n_unique() == 4
    assert set(truth.columns) >= {"path", "kind", "onset_s", "ramp_s", "hours", "seed", "seizures", "segments"}
    for row, rec in recordings.values():
        header = read_header(long_set / row["path"])
        assert header.format == "EDF+C" and header.n_records == HOURS * 3600 and not header.warnings
        assert rec.n_samples == HOURS * 3600 * CONTRACT.sfreq and rec.channel_mask.all()
        assert row["hours"] == HOURS and row["duration_s"] == HOURS * 3600
        assert rec.facts.age_years == pytest.approx(row["age_years"], abs=1)  # the header says the age
        assert (row["onset_s"] is None) == (row["kind"] == "no_change")
        assert row["segments"][0]["start_s"] == 0 and row["segments"][-1]["stop_s"] == HOURS * 3600
        assert "L0" in row["path"] and row["kind"] not in row["path"]  # a name says nothing of the truth
    with open(long_set / "sessions.csv", newline="") as f:
        assert [r["path"] for r in csv.DictReader(f)] == list(truth["path"])


def test_burst_suppression_starts_at_its_onset(recordings: dict) -> None:
    row, rec = recordings["burst_suppression_onset"]
    onset = row["onset_s"]
    before, after = _suppressed(_span(rec, 0, onset)), _suppressed(_span(rec, onset, HOURS * 3600))
    assert before < 0.05 and after > 0.4, (before, after)
    # the change is at the onset: the minute either side of it
    assert _suppressed(_span(rec, onset - 60, onset)) < 0.05 < 0.3 < _suppressed(_span(rec, onset, onset + 60))


def test_an_evolving_encephalopathy_slows_the_background_and_loses_the_pdr(recordings: dict) -> None:
    row, rec = recordings["evolving_encephalopathy"]
    onset, end = row["onset_s"], HOURS * 3600
    assert row["ramp_s"] > 0
    pre, late = _bands(_span(rec, 0, onset)), _bands(_span(rec, end - 120, end))
    # the simulator's diffuse slowing: theta grows most, delta too, the fast bands do not
    assert late["delta"] > 1.8 * pre["delta"] and late["theta"] > 4 * pre["theta"]
    slow = lambda b: (b["delta"] + b["theta"]) / (b["alpha"] + b["beta"])  # noqa: E731
    assert slow(late) > 3 * slow(pre)
    # the posterior dominant rhythm is lost
    pdr = [_bands(_span(rec, a, b, ("O1", "O2")))["alpha"] for a, b in ((0, onset), (end - 120, end))]
    assert pdr[1] < 0.6 * pdr[0]
    # slowing grows through the ramp (the minutes before the onset are the background)
    steps = [slow(_bands(_span(rec, a, a + 120))) for a in range(int(onset) - 120, int(end), 120)]
    assert steps[0] < 1.3 * slow(pre) and steps[-1] > 2 * steps[1]
    assert all(b > 0.9 * a for a, b in zip(steps, steps[1:]))


def test_a_seizure_cluster_starts_at_its_onset(recordings: dict) -> None:
    row, rec = recordings["seizure_cluster"]
    seizures = row["seizures"]
    assert len(seizures) >= 2 and seizures[0]["onset_s"] == row["onset_s"]
    onsets = [s["onset_s"] for s in seizures]
    assert onsets == sorted(onsets) and onsets[-1] - onsets[0] <= 360 + 120  # within the cluster's span
    baseline = _span(rec, 0, onsets[0] - 10).std()
    for s in seizures:  # each seizure stands above the interictal background
        ictal = _span(rec, s["onset_s"] + 0.3 * s["duration_s"], s["onset_s"] + s["duration_s"])
        assert ictal.std() > 1.5 * baseline
    # the ictal segments: the onset's and the next ones, within the cluster's span
    ictal = [seg["start_s"] for seg in row["segments"] if "seizure=" in seg["findings"]]
    assert ictal[0] <= onsets[0] < ictal[0] + 120 and ictal[-1] < ictal[0] + 360


def test_a_recording_without_change_keeps_its_background(recordings: dict) -> None:
    row, rec = recordings["no_change"]
    half = HOURS * 3600 / 2
    first, second = _bands(_span(rec, 0, half)), _bands(_span(rec, half, 2 * half))
    for band in ("delta", "alpha"):
        assert 0.6 < second[band] / first[band] < 1.6
    assert row["seizures"] == [] and len({s["findings"] for s in row["segments"]}) == 1


def test_recordings_are_planned_from_the_seed() -> None:
    a = [plan_recording(i, k, HOURS, 3, CONFIG) for i, k in enumerate(KINDS)]
    assert a == [plan_recording(i, k, HOURS, 3, CONFIG) for i, k in enumerate(KINDS)]
    assert a != [plan_recording(i, k, HOURS, 4, CONFIG) for i, k in enumerate(KINDS)]
    long = plan_recording(0, "evolving_encephalopathy", 24, 0)  # defaults: an hour of ramp in 5-minute steps
    assert long.ramp_s == 3600 and long.segments[-1].stop_s == 24 * 3600
    steps = [s for s in long.segments if long.onset_s <= s.start_s < long.onset_s + 3600]
    assert len(steps) == 12 and [s.findings[0].severity for s in steps] == sorted(s.findings[0].severity for s in steps)


def test_memory_of_generation_does_not_grow_with_the_recordings_length(tmp_path: Path) -> None:
    cfg = LongRecordingConfig(segment_s=60)

    def peak(hours: float, out: Path) -> int:
        tracemalloc.start()
        try:
            synthesize_long_recordings(out, 1, hours=hours, seed=0, kinds=("no_change",), config=cfg, workers=1)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    short, long = peak(0.05, tmp_path / "short"), peak(0.3, tmp_path / "long")
    # six times the signal, the same peak: one segment is held at a time (0.3 h whole would be ~100 MB)
    assert long / short < 1.3 and long < 60e6


def test_bad_options_are_refused(tmp_path: Path, long_set: Path) -> None:
    for kw, match in (({"n": 0}, "n must be at least 1"), ({"n": 1, "kinds": ("coma",)}, "kinds must be some of"),
                      ({"n": 1, "hours": 0.01}, "at least two segments")):
        with pytest.raises(ValueError, match=match):
            synthesize_long_recordings(tmp_path / "x", **kw)
    with pytest.raises(FileExistsError):
        synthesize_long_recordings(long_set, 1, hours=HOURS, config=CONFIG)
    with pytest.raises(ValueError, match="crossfade_s must be under half"):
        LongRecordingConfig(segment_s=60, crossfade_s=30)


def test_synth_long_command(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["synth-long", str(tmp_path / "out"), "--n", "1", "--hours", "0.17",
                                 "--kinds", "burst_suppression_onset", "--workers", "1"])
    assert r.exit_code == 0, r.output
    truth = pl.read_parquet(tmp_path / "out" / "truth.parquet")
    assert truth["kind"].to_list() == ["burst_suppression_onset"] and truth["onset_s"][0] > 0
    bad = CliRunner().invoke(app, ["synth-long", str(tmp_path / "bad"), "--kinds", "coma"])
    assert bad.exit_code == 2 and "kinds must be some of" in bad.output
