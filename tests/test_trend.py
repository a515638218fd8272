"""``clef trend`` and :mod:`clef.trend`: strided embeddings, scores, hemisphere CSA and flagged changes
of long recordings, on generated hour-long files with and without a change at a known time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from benchmark_tasks.probes import LogisticProbe, TaskProbe, save_probe
from clef.embedding import Embedder
from clef.trend import REUSE_MARGIN_S, ChangeDetector, TrendBuilder, TrendConfig, parse_duration, trend
from tokenizer import CANONICAL_CHANNELS
from tokenizer.edf_writer import EDFSignal, write_edf
from tokenizer.ingest import RecordingStream
from tokenizer.spectrogram_cache import checked_frames
from tokenizer.spectrogram_stream import FrameBlock

FS = 200.0
#: The change file: a normal background, then from this second a slowed one.
CHANGE_S = 1800.0
LEFT = np.array([c[-1] in "1357" for c in CANONICAL_CHANNELS])
RIGHT = np.array([c[-1] in "2468" for c in CANONICAL_CHANNELS])
#: Short warm-up of the change rule, so that an hour holds enough stride points.
FAST = {"change_k": 2, "min_history": 4}


def _background(seconds: float, seed: int, *, slow: bool = False, left_delta: bool = False) -> np.ndarray:
    """(19, n) µV: a posterior 10 Hz rhythm (``slow``: 4 Hz theta and 1.5 Hz delta, larger) plus
    noise; ``left_delta`` adds 1.5 Hz delta over the left electrodes."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    post = np.array([0.3 if c.startswith(("Fp", "F")) else 1.0 for c in CANONICAL_CHANNELS])[:, None]
    phase = rng.uniform(0, 6, (19, 1))
    if slow:
        x = 60 * post * np.sin(2 * np.pi * 4.0 * t + phase) + 50 * np.sin(2 * np.pi * 1.5 * t + phase)
    else:
        x = 20 * post * np.sin(2 * np.pi * 10.0 * t + phase)
    x = x + rng.normal(0, 5, (19, n))
    if left_delta:
        x[LEFT] += 40 * np.sin(2 * np.pi * 1.5 * t)
    return x


def _write(path: Path, x: np.ndarray, annotations: tuple = ()) -> Path:
    sigs = [EDFSignal(f"EEG {c}-REF", x[i], FS) for i, c in enumerate(CANONICAL_CHANNELS)]
    return write_edf(path, sigs, annotations=annotations)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An hour with a slowing from ``CHANGE_S``, an hour of a steady left-lateralised background,
    25 minutes with an annotation, and five minutes."""
    d = tmp_path_factory.mktemp("trend")
    change = np.concatenate([_background(CHANGE_S, 0), _background(3600 - CHANGE_S, 1, slow=True)], axis=1)
    return {"change": _write(d / "change.edf", change),
            "steady": _write(d / "steady.edf", _background(3600, 2, left_delta=True)),
            "medium": _write(d / "medium.edf", _background(1500, 4), ((600.0, None, "eyes closed"),)),
            "short": _write(d / "short.edf", _background(300, 3))}


@pytest.fixture(scope="module")
def embedder(svc_checkpoint: Path) -> Embedder:
    return Embedder(svc_checkpoint)


@pytest.fixture(scope="module")
def frames(files: dict[str, Path], embedder: Embedder) -> dict[str, list[FrameBlock]]:
    """Each hour's spectrogram frames, computed once and fed to several builders."""
    return {k: list(checked_frames(str(files[k]), RecordingStream(files[k], embedder.contract, block_s=1800.0),
                                   embedder.contract)) for k in ("change", "steady")}


def _build(embedder: Embedder, blocks: list[FrameBlock], probes: dict | None = None, **config: float) -> TrendBuilder:
    b = TrendBuilder(embedder, probes, TrendConfig(**config))
    for f in blocks:
        b.add(f)
    b.finish()
    return b


def _probe(results: Path, task: str, coef: np.ndarray, intercept: float, model_id: str) -> None:
    d = coef.shape[0]
    save_probe(results, TaskProbe(task, LogisticProbe(coef, intercept, np.zeros(d), np.ones(d)), model_id))


@pytest.fixture(scope="module")
def change_trend(embedder: Embedder, frames: dict[str, list[FrameBlock]], tmp_path_factory: pytest.TempPathFactory):
    """The change file's trend every minute, with a probe of the slowing: the direction from the
    file's first window (normal) to its last (slowed), as ``clef embed`` encodes them."""
    from benchmark_tasks.probes import load_probes

    tokens = embedder.tokenizer.tokenize_frames(iter(frames["change"]), "x", "change.edf")
    windows = embedder.embed_tokens([tokens])[0].windows
    before, after = windows[0], windows[-1]
    coef = (after - before) / float(np.dot(after - before, after - before)) * 12.0
    results = tmp_path_factory.mktemp("probes")
    _probe(results, "slowing", coef, -float(np.dot(coef, (before + after) / 2)), embedder.model_id)
    return _build(embedder, frames["change"], load_probes(results), stride_s=60.0, **FAST).result()


@pytest.fixture(scope="module")
def steady_trend(embedder: Embedder, frames: dict[str, list[FrameBlock]]):
    return _build(embedder, frames["steady"], stride_s=120.0, **FAST).result()


@pytest.mark.parametrize("text, seconds", [("30s", 30.0), ("5min", 300.0), ("5 m", 300.0), ("1h", 3600.0),
                                           ("1.5h", 5400.0), ("2d", 172800.0), ("90", 90.0), (45, 45.0)])
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5 parsecs", "-5min", "0s", "min"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_change_rule_flags_a_step_once_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    steady = ChangeDetector(k=3, z=5, min_history=6, min_delta=0.1, metric="absolute")
    for v in 0.5 + rng.normal(0, 0.02, 200):
        steady.push(v)
    assert steady.finish() == [] and not any(steady.flags)

    step = ChangeDetector(k=3, z=5, min_history=6, min_delta=0.1, refractory=10, metric="absolute")
    series = np.r_[np.full(40, 0.2), np.full(40, 0.8), np.full(5, 0.2)] + rng.normal(0, 0.02, 85)
    closed = [c for v in series for c in step.push(v)] + step.finish()
    # the step up is one change at its boundary; the step back down, 40 points later, a second
    assert [onset for onset, _ in closed] == [40, 80]
    assert step.flags.count(True) == 2
    # a step back inside the refractory period is not flagged
    quiet = ChangeDetector(k=3, z=5, min_history=6, min_delta=0.1, refractory=10, metric="absolute")
    closed = [c for v in np.r_[np.full(40, 0.2), np.full(5, 0.8), np.full(30, 0.2)] for c in quiet.push(v)]
    assert [onset for onset, _ in closed + quiet.finish()] == [40]


def test_change_is_flagged_near_its_onset(change_trend) -> None:
    r = change_trend
    emb = [c for c in r.changes if c.signal == "embedding"]
    assert len(emb) == 1, r.changes
    assert abs(emb[0].onset_s - CHANGE_S) <= 180.0
    assert emb[0].detected_s >= emb[0].onset_s  # causal: known once k points follow the boundary
    t = r.table()
    assert t["embedding_flag"].sum() == 1
    assert t.filter(pl.col("embedding_flag"))["t_s"].item() == pytest.approx(emb[0].onset_s + 30.0)
    # the CSA shows the slowing from its onset: delta power rises by more than 10 dB on both sides
    csa = r.csa_table()
    before = csa.filter(pl.col("t_s") <= CHANGE_S)
    after = csa.filter(pl.col("t_s") > CHANGE_S + 60)
    for side in ("left", "right"):
        assert after[f"{side}_delta_db"].mean() > before[f"{side}_delta_db"].mean() + 10
        assert after[f"{side}_alpha_db"].mean() < before[f"{side}_alpha_db"].mean()


def test_no_change_is_flagged_on_a_steady_recording(steady_trend) -> None:
    assert steady_trend.changes == []
    assert not steady_trend.table()["embedding_flag"].any()


def test_table_shape_and_columns(change_trend, embedder: Embedder) -> None:
    r = change_trend
    t = r.table()
    context = 1280.0  # the whole window: the test checkpoint sets no context_s
    assert r.context_s == context
    # one point per minute from the first whole context to the end of the hour
    assert t["t_s"].to_list() == [float(s) for s in range(1320, 3601, 60)]
    assert t.columns == ["t_s", "context_start_s", "valid_fraction", "embedding", "embedding_change",
                         "embedding_threshold", "embedding_drift", "embedding_flag", "score_slowing",
                         "score_slowing_change", "score_slowing_threshold", "score_slowing_drift",
                         "score_slowing_flag"]
    assert (t["context_start_s"] == t["t_s"] - context).all()
    assert t["embedding"].list.len().unique().to_list() == [embedder.cfg.model.dim]
    assert t["valid_fraction"].min() > 0.99
    # a boundary's distance needs k points on each side: none before the first k points, none after the last k - 1
    k = FAST["change_k"]
    assert t["embedding_change"].is_nan().to_list() == [True] * k + [False] * (t.height - 2 * k + 1) + [True] * (k - 1)
    # thresholds once min_history distances exist
    assert t["embedding_threshold"].is_nan().sum() == k + FAST["min_history"] - 1 + k - 1
    csa = r.csa_table()
    assert csa.height == 60 and csa["t_s"][0] == 60.0
    assert csa["left_db"].list.len().unique().to_list() == [len(r.freqs)] == [128]
    assert {f"{s}_{b}_db" for s in ("left", "right") for b in ("delta", "theta", "alpha", "beta")} <= set(csa.columns)


def test_csa_is_lateralised(steady_trend) -> None:
    csa = steady_trend.csa_table()
    left, right = np.stack(csa["left_db"].to_numpy()), np.stack(csa["right_db"].to_numpy())
    delta = (steady_trend.freqs >= 1.0) & (steady_trend.freqs < 2.0)
    assert (left[:, delta].mean(1) > right[:, delta].mean(1) + 10).all()
    assert (csa["left_delta_db"] > csa["right_delta_db"] + 6).all()
    assert (csa["left_alpha_db"] - csa["right_alpha_db"]).abs().max() < 1.5


def test_builder_is_incremental(embedder: Embedder, frames: dict[str, list[FrameBlock]], steady_trend) -> None:
    """Frames given in small, uneven pieces (as a follower of a growing file would) give the batch's trend."""
    pieces = []
    for f in frames["steady"]:
        cuts = [0, 7, 300, 301, 1100, f.values.shape[2]]
        pieces += [FrameBlock(f.values[:, :, a:b], f.frame_mask[a:b], f.channel_mask) for a, b in zip(cuts, cuts[1:])]
    r = _build(embedder, pieces, stride_s=120.0, **FAST).result()
    np.testing.assert_array_equal(r.t_s, steady_trend.t_s)
    np.testing.assert_allclose(r.embeddings, steady_trend.embeddings, atol=1e-5)
    np.testing.assert_allclose(r.csa_left, steady_trend.csa_left, atol=1e-4)
    assert r.changes == steady_trend.changes


def test_reuse_tokens_tokenizes_the_newest_columns_only(embedder: Embedder, frames: dict[str, list[FrameBlock]],
                                                         steady_trend) -> None:
    """``reuse_tokens`` (an approximation, off by default): after the first point, each point
    tokenizes its newest stride plus the margin, not its whole window; the embeddings stay
    near the exact ones and the steady hour still shows no change."""
    widths: list[int] = []
    hook = embedder.tokenizer.model.encoder.register_forward_pre_hook(lambda m, a: widths.append(a[0].shape[-1]))
    try:
        r = _build(embedder, frames["steady"], stride_s=120.0, reuse_tokens=True, **FAST).result()
    finally:
        hook.remove()
    assert widths[0] == 1280 and set(widths[1:]) == {120 + REUSE_MARGIN_S}
    np.testing.assert_array_equal(r.t_s, steady_trend.t_s)
    a, b = r.embeddings.astype(np.float64), steady_trend.embeddings.astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos[0] == pytest.approx(1.0, abs=1e-6)  # the first point is tokenized whole
    assert cos.min() > 0.95 and np.abs(a - b).max() > 1e-3  # close, not the same
    assert r.changes == []


def test_window_aligned_points_are_the_embedders_windows(embedder: Embedder,
                                                         frames: dict[str, list[FrameBlock]]) -> None:
    """A stride of one window puts the points on the windows ``clef embed`` encodes: same embeddings."""
    r = _build(embedder, frames["steady"], stride_s=1280.0).result()
    tokens = embedder.tokenizer.tokenize_frames(iter(frames["steady"]), "x", "steady.edf")
    windows = embedder.embed_tokens([tokens])[0].windows
    assert r.t_s.tolist() == [1280.0, 2560.0]
    np.testing.assert_allclose(r.embeddings, windows[:2], atol=1e-5)


def test_probe_scores_and_their_changes(change_trend) -> None:
    r = change_trend
    s = r.scores["slowing"]
    assert s[r.t_s < CHANGE_S].max() < 0.2 and s[r.t_s > CHANGE_S + 1280].min() > 0.8
    flagged = [c for c in r.changes if c.signal == "score:slowing"]
    assert len(flagged) == 1 and abs(flagged[0].onset_s - CHANGE_S) <= 300.0
    assert flagged[0].first_s <= flagged[0].onset_s < flagged[0].detected_s
    t = r.table()
    assert t.filter(pl.col("score_slowing_flag"))["t_s"].item() == pytest.approx(flagged[0].onset_s + 30.0)
    assert {"score_slowing", "score_slowing_change", "score_slowing_threshold"} <= set(t.columns)


@pytest.fixture()
def cli():
    from benchmark_tasks.cli import register
    from clef.cli import app

    if not any(c.name == "trend" for c in app.registered_commands):
        register(app)
    return lambda *args: CliRunner().invoke(app, ["trend", *map(str, args)])


def test_cli_writes_tables_and_figure(cli, files: dict[str, Path], svc_checkpoint: Path, embedder: Embedder,
                                      tmp_path: Path) -> None:
    _probe(tmp_path / "results", "noise", np.full(embedder.cfg.model.dim, 0.1), 0.0, embedder.model_id)
    out = tmp_path / "out"
    r = cli(files["medium"], "--checkpoint", svc_checkpoint, "--probes", tmp_path / "results", "--stride", "1min",
            "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output
    assert "4 points every 60 s" in " ".join(r.output.split())
    t = pl.read_parquet(out / "trend.parquet")
    assert t["t_s"].to_list() == [1320.0, 1380.0, 1440.0, 1500.0] and "score_noise" in t.columns
    assert t["clock"].to_list() == ["09:22:00", "09:23:00", "09:24:00", "09:25:00"]  # the writer starts at 09:00:00
    assert pl.read_parquet(out / "csa.parquet").height == 25
    assert set(pl.read_parquet(out / "changes.parquet").columns) >= {"signal", "onset_s", "detected_s"}
    meta = pl.read_parquet_metadata(out / "trend.parquet")
    assert meta["clef.schema"] == "clef.trend/1" and meta["clef.trend.model_id"] == embedder.model_id
    png = (out / "trend.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_trend_api_reads_annotations(files: dict[str, Path], embedder: Embedder) -> None:
    r = trend(files["medium"], embedder, stride_s="25min")
    assert r.t_s.tolist() == [1500.0]
    assert [(a.onset, a.text) for a in r.annotations] == [(600.0, "eyes closed")]
    assert r.source_sha256 and r.duration_s == 1500.0 and r.start_clock_s == 9 * 3600.0
    assert r.clock(r.t_s) == ["09:25:00"]


def test_cli_bad_input(cli, files: dict[str, Path], svc_checkpoint: Path, tmp_path: Path) -> None:
    ck = ("--checkpoint", svc_checkpoint)
    cases = [
        ((tmp_path / "absent.edf", *ck), "no such file"),
        ((files["short"], *ck), "at least one context of the model (1280 s)"),
        ((files["change"], *ck, "--stride", "5 fortnights"), "--stride: a duration like 30s, 5min, 1h or 2d"),
        ((files["change"], *ck, "--stride", "0.5s"), "a stride of at least the spectrogram step (1 s)"),
        ((files["change"], *ck, "--stride", "2h"), "ends before the first stride point (7200 s)"),
        ((files["change"], *ck, "--csa-step", "0.2s"), "a CSA step of at least the spectrogram step (1 s)"),
        ((files["change"], *ck, "--probes", tmp_path), "no readable probe"),
    ]
    _probe(tmp_path / "other", "slowing", np.ones(Embedder(svc_checkpoint).cfg.model.dim), 0.0, "f" * 16)
    cases.append(((files["change"], *ck, "--probes", tmp_path / "other"), "probes for another checkpoint"))
    for args, message in cases:
        r = cli(*args, "--no-progress", "--out", tmp_path / "out")
        assert r.exit_code == 2, (args, r.output)
        assert message in " ".join(r.output.split()) and "Traceback" not in r.output, (args, r.output)
    assert not (tmp_path / "out").exists()


def test_a_gap_gives_nan_points_and_csa_not_an_error(embedder: Embedder, frames: dict[str, list[FrameBlock]],
                                                     tmp_path: Path) -> None:
    """Frames masked over 25 minutes (a gap of an EDF+D file): contexts inside it have no embedding, its CSA
    steps no value; the points around it, the change rule, the tables and the figure carry on."""
    from clef.viz import plot_trend

    gap = slice(1400, 2900)
    blocks = []
    start = 0
    for f in frames["steady"]:
        n = f.values.shape[2]
        mask = f.frame_mask.copy()
        lo, hi = max(gap.start - start, 0), min(gap.stop - start, n)
        if lo < hi:
            mask[lo:hi] = False
        blocks.append(FrameBlock(f.values, mask, f.channel_mask))
        start += n
    r = _build(embedder, blocks, stride_s=120.0, **FAST).result()
    t = r.table()
    inside = (r.t_s - r.context_s >= gap.start) & (r.t_s <= gap.stop)
    assert r.t_s[inside].tolist() == [2760.0, 2880.0] and np.isnan(r.embeddings[inside]).all()
    assert np.isfinite(r.embeddings[~inside]).all()
    assert t.filter(pl.col("t_s") >= 2760.0, pl.col("t_s") <= 2880.0)["valid_fraction"].to_list() == [0.0, 0.0]
    csa = r.csa_table()
    gap_rows = csa.filter((pl.col("t_s") > 1440) & (pl.col("t_s") <= 2880))
    assert gap_rows.height == 24 and gap_rows["left_alpha_db"].is_nan().all()
    assert not csa.filter(pl.col("t_s") <= 1380)["left_alpha_db"].is_nan().any()
    assert r.changes == []
    r.write(tmp_path)
    assert plot_trend(r, tmp_path / "trend.png").is_file()
