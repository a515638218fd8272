"""Explanations (:mod:`clef.explain`, ``clef explain``): occlusion recovers where a hand-built model
looks (left channels, one minute, the beta band); shapes and JSON; the figure; the command's errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clef.explain import (
    GRADIENT_PASSES,
    REGION_NAMES,
    Explanation,
    channel_regions,
    explain,
    inpaint_band,
    mirror_hemisphere,
    similarity_scorer,
)
from clef.viz import plot_explanation
from tokenizer import CANONICAL_CHANNELS
from tokenizer.contract import SignalContract
from tokenizer.edf_writer import EDFSignal, write_edf
from tokenizer.spectrogram_cache import SessionSpectrogram
from tokenizer.vqgan.layout import HemisphereLayout
from tokenizer.windows import WindowSpec

CONTRACT = SignalContract()
FREQS = CONTRACT.spectrogram.fmin + np.arange(CONTRACT.spectrogram.n_freqs) / CONTRACT.spectrogram.window_s
LEFT = list(channel_regions(tuple(CONTRACT.channels))["left"])
BETA = (FREQS >= 13) & (FREQS < 30)
#: The minute the hand-built model's signal is in.
SIGNAL_MINUTE = 3


class _Quantiser:
    """A hand-built tokenizer model: one token row, one token per column; the code is 1 where the
    column's left lateral electrodes carry beta power well above their neighbouring bins."""

    def tokenize(self, x: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, _, wf = x.shape
        cols = x.reshape(b, x.shape[1], x.shape[2], 128, wf // 128).mean(-1)  # (B, C, F, 128)
        left = cols[:, LEFT]
        beta = left[:, :, torch.from_numpy(BETA)].mean((1, 2))
        rest = left[:, :, torch.from_numpy(~BETA)].mean((1, 2))
        return ((beta - rest) > 0.2).long()[:, None, :], frame_mask


class _Encoder:
    """Window embedding: (share of code-1 tokens among the valid ones, 1)."""

    def embed_windows(self, codes: torch.Tensor, valid: torch.Tensor, columns: int | None = None) -> torch.Tensor:
        v = valid.reshape(codes.shape[0], -1).float()
        share = (codes.reshape(codes.shape[0], -1).float() * v).sum(1) / v.sum(1).clamp(min=1)
        return torch.stack([share, torch.ones_like(share)], 1)


def _embedder() -> SimpleNamespace:
    tok = SimpleNamespace(model=_Quantiser(), grid=(1, 128), device=torch.device("cpu"),
                          spec=WindowSpec.from_contract(CONTRACT))
    return SimpleNamespace(tokenizer=tok, contract=CONTRACT, encoder=_Encoder(), context_columns=None,
                           device=torch.device("cpu"), model_id="handbuilt", channel_map=None)


def _spectrogram(minutes: float = 10.0, absent: tuple[str, ...] = ()) -> SessionSpectrogram:
    """A 1/f-ish spectrogram; the left lateral electrodes carry 20 dB of beta in minute ``SIGNAL_MINUTE``."""
    t = int(minutes * 60)
    rng = np.random.default_rng(0)
    v = (20 - 0.5 * FREQS)[None, :, None] + rng.normal(0, 1, (19, len(FREQS), t))
    a, b = SIGNAL_MINUTE * 60, (SIGNAL_MINUTE + 1) * 60
    for c in LEFT:
        v[c, BETA, a:b] += 20
    cmask = np.array([c not in absent for c in CONTRACT.channels])
    return SessionSpectrogram(v.astype(np.float16), np.ones(t, bool), cmask, "0" * 64, "handbuilt.edf")


def _probe(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)[:, 0]


@pytest.fixture(scope="module")
def handbuilt() -> Explanation:
    return explain(_spectrogram(absent=("Pz",)), _embedder(), _probe, target="probe:handbuilt")


def test_occlusion_finds_the_left_side_the_minute_and_the_band(handbuilt: Explanation) -> None:
    ex = handbuilt
    assert ex.baseline > 0
    assert ex.hemisphere == "left"
    assert ex.region[REGION_NAMES.index("left")] == pytest.approx(ex.baseline)  # the whole score is left
    assert ex.region[REGION_NAMES.index("right")] == pytest.approx(0.0, abs=1e-9)
    assert ex.top_minute == SIGNAL_MINUTE
    assert ex.top_band == "beta"
    assert ex.band_shares()["beta"] == pytest.approx(1.0)
    # the channel map: only left lateral electrodes carry it, each a share (the others stay above threshold)
    assert np.nanmax(ex.channel[[i for i in range(19) if i not in LEFT]]) <= 1e-9


def test_shapes_nan_and_json(handbuilt: Explanation) -> None:
    ex = handbuilt
    assert ex.channel.shape == (19,) and ex.region.shape == (len(REGION_NAMES),) and ex.band.shape == (4,)
    assert ex.time.shape == (10,) and ex.csa.shape == (2, 10, len(FREQS))
    assert math.isnan(ex.channel[CONTRACT.channels.index("Pz")])  # absent: nothing to take away
    d = json.loads(json.dumps(ex.to_dict()))
    assert d["channel"]["Pz"] is None and d["summary"]["hemisphere"] == "left"
    assert len(d["time"]["attribution"]) == 10 and d["time"]["step_s"] == 60.0
    assert set(d["band"]) == {"delta", "theta", "alpha", "beta"}
    # one variant per present channel, region, band and minute, plus the baseline
    assert ex.n_variants == 1 + 18 + len(REGION_NAMES) + 4 + 10


def test_regions_only_and_options() -> None:
    ex = explain(_spectrogram(minutes=3.5), _embedder(), _probe, channels=False, minute_s=30.0)
    assert np.isnan(ex.channel).all() and ex.time.shape == (7,)
    assert ex.n_variants == 1 + len(REGION_NAMES) + 4 + 7
    with pytest.raises(ValueError, match="whole number of token columns"):
        explain(_spectrogram(minutes=2), _embedder(), _probe, minute_s=15.0)
    with pytest.raises(ValueError, match="one finite score per embedding"):
        explain(_spectrogram(minutes=2), _embedder(), lambda x: np.zeros(1))


def test_time_by_gradient_agrees_with_time_by_occlusion() -> None:
    """With a real (small, random) session transformer the gradient time attribution, the
    first-order effect of each minute's tokens from one backward pass, follows one encoder
    pass per minute; the other axes are occlusion in both."""
    from clef.factory import create_model

    torch.manual_seed(0)
    enc = create_model("tiny", vocab_size=2, grid=(1, 128),
                       overrides={"model": {"dim": 32, "depth": 2, "heads": 2}}).eval()
    emb = _embedder()
    emb.encoder = enc
    score = similarity_scorer(np.random.default_rng(0).normal(size=32))
    spec = _spectrogram(minutes=6)
    grad = explain(spec, emb, score, channels=False, time_method="gradient")
    occl = explain(spec, emb, score, channels=False, time_method="occlusion")
    # auto: the exact occlusion while it costs no more than the gradient's passes, then the gradient
    assert explain(_spectrogram(minutes=GRADIENT_PASSES), emb, score, channels=False).time_method == "occlusion"
    assert explain(spec, emb, score, channels=False).time_method == "gradient"
    assert grad.time_method == "gradient" and occl.time_method == "occlusion"
    assert grad.to_dict()["time_method"] == "gradient"
    assert occl.n_variants == grad.n_variants + 6
    assert np.array_equal(grad.region, occl.region) and np.array_equal(grad.band, occl.band)
    assert grad.baseline == occl.baseline
    assert np.ptp(occl.time) > 0 and np.corrcoef(grad.time, occl.time)[0, 1] > 0.95
    assert grad.top_minute == occl.top_minute
    # two windows, minute 21 across their border: the gradient is taken window by window
    long_grad = explain(_spectrogram(minutes=24), emb, score, channels=False, time_method="gradient")
    long_occl = explain(_spectrogram(minutes=24), emb, score, channels=False, time_method="occlusion")
    assert long_grad.time.shape == (24,) and np.corrcoef(long_grad.time, long_occl.time)[0, 1] > 0.95
    with pytest.raises(ValueError, match="time_method"):
        explain(spec, emb, score, time_method="integrated")
    with pytest.raises(ValueError, match="presence weights"):
        explain(spec, _embedder(), _probe, time_method="gradient")


def test_inpaint_band_and_similarity() -> None:
    x = np.zeros((1, len(FREQS), 2), np.float32)
    x[0, BETA] = 10.0
    y = inpaint_band(x, FREQS, (13.0, 30.0))
    assert np.abs(y).max() == 0.0 and x[0, BETA].max() == 10.0  # a copy, the band gone
    s = similarity_scorer(np.array([1.0, 0.0]))
    assert s(np.array([[2.0, 0.0], [0.0, 3.0]])).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError):
        similarity_scorer(np.zeros(3))


def test_mirror_hemisphere_copies_the_homologues() -> None:
    layout = HemisphereLayout.from_channels(tuple(CONTRACT.channels))
    x = np.random.default_rng(0).normal(size=(2, 19, 4, 3)).astype(np.float32)
    x[:, CONTRACT.channels.index("T4")] = 0.0  # absent in the recording: T3 becomes absent too
    y = mirror_hemisphere(x, tuple(CONTRACT.channels), "left")
    sides = layout.split(torch.from_numpy(y))
    assert torch.equal(sides[:2], sides[2:])  # the two sides' images (lateral, then midline) are the same
    assert np.abs(y[:, CONTRACT.channels.index("T3")]).max() == 0.0
    right = list(layout.right[:layout.n_lateral]) + list(layout.left[layout.n_lateral:])
    assert np.array_equal(y[:, right], x[:, right])  # the right side and the midline unchanged
    assert not np.array_equal(y, x) and np.abs(x[:, CONTRACT.channels.index("Fp1")]).max() > 0  # a copy
    z = mirror_hemisphere(x, tuple(CONTRACT.channels), "right")
    assert np.array_equal(z[:, CONTRACT.channels.index("O2")], x[:, CONTRACT.channels.index("O1")])
    with pytest.raises(ValueError, match="side"):
        mirror_hemisphere(x, tuple(CONTRACT.channels), "frontal")


class _SideQuantiser:
    """Two token rows (left, right side image, the ``hemispheres`` layout): code 1 where the side's
    lateral electrodes are quiet (mean scaled input under 0.15, a low-voltage side)."""

    def tokenize(self, x: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, _, wf = x.shape
        layout = HemisphereLayout.from_channels(tuple(CONTRACT.channels))
        rows = []
        for side in (layout.left, layout.right):
            level = x[:, list(side[:layout.n_lateral])].reshape(b, -1, 128, wf // 128).mean((1, 3))  # (B, 128)
            rows.append((level < 0.15).long())
        return torch.stack(rows, 1), frame_mask


def test_hemisphere_baselines_mirror_and_absent() -> None:
    """A right side attenuated by 12 dB: mirroring the right (the left's healthy copy in its place)
    takes the finding away, mirroring the left makes both sides quiet; absent zeroes a side."""
    spec = _spectrogram(minutes=2)
    right = list(channel_regions(tuple(CONTRACT.channels))["right"])
    values = spec.values.astype(np.float32)
    values[right] -= 12.0
    spec = SessionSpectrogram(values.astype(np.float16), spec.frame_mask, spec.channel_mask, spec.source_sha256,
                              spec.source_path)
    emb = _embedder()
    emb.tokenizer.model, emb.tokenizer.grid = _SideQuantiser(), (2, 128)
    left_i, right_i = REGION_NAMES.index("left"), REGION_NAMES.index("right")
    mirror = explain(spec, emb, _probe, channels=False)
    assert mirror.hemisphere_baseline == "mirror" and mirror.to_dict()["hemisphere_baseline"] == "mirror"
    assert mirror.baseline == pytest.approx(0.5)  # the right row quiet, the left not
    assert mirror.region[right_i] == pytest.approx(0.5)  # both sides healthy: the score is gone
    assert mirror.region[left_i] == pytest.approx(-0.5)  # both sides quiet: the score doubles
    assert mirror.hemisphere == "right"
    absent = explain(spec, emb, _probe, channels=False, hemisphere_baseline="absent")
    assert absent.hemisphere_baseline == "absent"
    assert absent.region[left_i] == pytest.approx(-0.5)  # a zeroed side reads as quiet
    assert absent.region[right_i] == pytest.approx(0.0)
    # lobes, bands and minutes do not depend on how the hemispheres are taken away
    lobes = [REGION_NAMES.index(r) for r in REGION_NAMES if r not in ("left", "right")]
    assert np.array_equal(mirror.region[lobes], absent.region[lobes])
    assert np.array_equal(mirror.band, absent.band) and np.array_equal(mirror.time, absent.time)
    with pytest.raises(ValueError, match="hemisphere_baseline"):
        explain(spec, emb, _probe, hemisphere_baseline="zeros")


def test_figure_is_written(handbuilt: Explanation, tmp_path: Path) -> None:
    p = plot_explanation(handbuilt, tmp_path / "x" / "explanation.png")
    assert p.is_file() and p.stat().st_size > 10_000


# -- the command ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clef.factory import save_random_checkpoint

    return save_random_checkpoint("tiny", tmp_path_factory.mktemp("explain") / "st")


def _run(*args: str):
    from clef.cli import app, load_plugins

    load_plugins()
    return CliRunner().invoke(app, ["explain", *args])


def _edf(path: Path, seconds: float) -> Path:
    rng = np.random.default_rng(1)
    n = int(seconds * 200)
    return write_edf(path, [EDFSignal(f"EEG {c}-REF", rng.normal(0, 10, n), 200.0) for c in CANONICAL_CHANNELS])


def test_cli_errors(checkpoint: Path, tmp_path: Path) -> None:
    from tests.factories import write_store

    edf = _edf(tmp_path / "s.edf", 130.0)
    r = _run(str(edf), "--checkpoint", str(checkpoint))
    assert r.exit_code == 2 and "exactly one of --task" in r.output
    r = _run(str(edf), "--checkpoint", str(checkpoint), "--task", "t", "--neighbour", "n", "--store", str(tmp_path))
    assert r.exit_code == 2 and "exactly one of --task" in r.output
    r = _run(str(edf), "--checkpoint", str(checkpoint), "--task", "eeg_x")
    assert r.exit_code == 2 and "--task needs --probes" in r.output
    results = tmp_path / "results"
    (results / "probes").mkdir(parents=True)
    r = _run(str(edf), "--checkpoint", str(checkpoint), "--task", "eeg_x", "--probes", str(results))
    assert r.exit_code == 2 and "task 'eeg_x' has no probe" in r.output
    store = tmp_path / "store"
    write_store(store, ["A", "B"], np.ones((2, 8)))
    (store / "store.json").write_text(json.dumps({"schema": "clef.store/1", "archive": str(tmp_path)}))
    r = _run("nosuch", "--checkpoint", str(checkpoint), "--neighbour", "A", "--store", str(store))
    assert r.exit_code == 2 and "session 'nosuch' is not in the store" in r.output
    short = _edf(tmp_path / "short.edf", 2.0)
    r = _run(str(short), "--checkpoint", str(checkpoint), "--neighbour", "A", "--store", str(store))
    assert r.exit_code == 2 and "no embedding of model" in r.output


def test_cli_writes_json_and_figure_and_refuses_a_short_file(checkpoint: Path, tmp_path: Path) -> None:
    from benchmark_tasks.probes import LogisticProbe, TaskProbe, save_probe
    from clef.embedding import Embedder

    emb = Embedder(checkpoint)
    dim = int(emb.cfg.model.dim)
    results = tmp_path / "results"
    save_probe(results, TaskProbe("eeg_left", LogisticProbe(np.ones(dim) / dim, 0.0, np.zeros(dim), np.ones(dim)),
                                  emb.model_id))
    edf = _edf(tmp_path / "s.edf", 130.0)
    out = tmp_path / "out"
    r = _run(str(edf), "--checkpoint", str(checkpoint), "--task", "eeg_left", "--probes", str(results),
             "--out", str(out), "--regions-only")
    assert r.exit_code == 0, r.output
    d = json.loads((out / "explanation.json").read_text())
    assert d["target"] == "probe:eeg_left" and len(d["time"]["attribution"]) == 3
    assert d["hemisphere_baseline"] == "mirror"
    assert (out / "explanation.png").stat().st_size > 10_000
    short = _edf(tmp_path / "short.edf", 2.0)
    r = _run(str(short), "--checkpoint", str(checkpoint), "--task", "eeg_left", "--probes", str(results))
    assert r.exit_code == 2 and "short" in r.output.lower()
    r = _run(str(edf), "--checkpoint", str(checkpoint), "--task", "eeg_left", "--probes", str(results),
             "--time", "integrated")
    assert r.exit_code == 2 and "time_method" in r.output
    r = _run(str(edf), "--checkpoint", str(checkpoint), "--task", "eeg_left", "--probes", str(results),
             "--hemisphere-baseline", "zeros")
    assert r.exit_code == 2 and "hemisphere_baseline" in r.output


def _store(root: Path, archive: Path, files: list[Path], checkpoint: Path) -> tuple[Path, str]:
    """A store of ``files`` embedded by the checkpoint (tables written as the store writer writes them)."""
    import polars as pl

    from clef.embedding import Embedder
    from services.schemas import EMBEDDINGS_SCHEMA, SESSIONS_SCHEMA, STORE_SCHEMA

    emb = Embedder(checkpoint)
    sess, vecs = [], []
    for k, f in enumerate(files):
        e = emb.embed(f)
        sid = f.stem
        sess.append({"session_id": sid, "source_sha256": e.source_sha256, "path": str(f.relative_to(archive)),
                     "format": "EDF", "duration_s": 130.0, "n_windows": 1, "sex": None, "age_years": None,
                     "patient_hash": f"{k:016x}", "site": None, "setting": None, "reference": "REF"})
        vecs.append({"session_id": sid, "source_sha256": e.source_sha256, "model_id": emb.model_id,
                     "vector": e.vector.tolist(), "window_vectors": e.windows.tolist(), "n_windows": 1})
    for table, rows, schema in (("sessions", sess, SESSIONS_SCHEMA), ("embeddings", vecs, EMBEDDINGS_SCHEMA)):
        (root / table).mkdir(parents=True, exist_ok=True)
        pl.DataFrame(rows, schema=schema).write_parquet(root / table / "part-00000.parquet")
    (root / "store.json").write_text(json.dumps({"schema": STORE_SCHEMA, "archive": str(archive), "models": {}}))
    return root, emb.model_id


def test_service_route_and_cli_examples(checkpoint: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from benchmark_tasks.probes import LogisticProbe, TaskProbe, save_probe
    from services.api import create_app
    from services.config import ServeConfig

    archive = tmp_path / "archive"
    archive.mkdir()
    files = [_edf(archive / f"S{k}.edf", 130.0 + 10 * k) for k in range(3)]
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "S1.txt").write_text("IMPRESSION: Focal slowing over the left temporal region.\n")
    store, model_id = _store(tmp_path / "store", archive, files, checkpoint)
    from clef.embedding import Embedder

    dim = int(Embedder(checkpoint).cfg.model.dim)
    results = tmp_path / "results"
    save_probe(results, TaskProbe("eeg_x", LogisticProbe(np.ones(dim) / dim, 0.0, np.zeros(dim), np.ones(dim)),
                                  model_id))
    # the command: a stored id, the nearest stored sessions with their report findings
    out = tmp_path / "out"
    r = _run("S0", "--checkpoint", str(checkpoint), "--task", "eeg_x", "--probes", str(results), "--store",
             str(store), "--out", str(out), "--regions-only", "--no-figure")
    assert r.exit_code == 0, r.output
    d = json.loads((out / "explanation.json").read_text())
    assert d["session_id"] == "S0" and [e["session_id"] for e in d["examples"]] != [] and \
        "S0" not in [e["session_id"] for e in d["examples"]]
    s1 = next(e for e in d["examples"] if e["session_id"] == "S1")
    assert s1["report_findings"] == ["focal_slowing"]
    r = _run("S0", "--checkpoint", str(checkpoint), "--neighbour", "S2", "--store", str(store), "--out",
             str(out), "--regions-only", "--no-figure", "--examples", "0")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "explanation.json").read_text())["target"] == "similarity:S2"
    # the service
    key = "explain-test-key-0123456789"
    app = create_app(ServeConfig(store=store, checkpoint=checkpoint, probes=results), [key])
    with TestClient(app) as c:
        h = {"X-API-Key": key}
        got = c.get("/sessions/S1/explain", params={"task": "eeg_x", "channels": "false"}, headers=h)
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["session_id"] == "S1" and body["channel"] == {} and len(body["time"]) == 3
        assert body["hemisphere"] in ("left", "right", None) and set(body["band"]) == {"delta", "theta", "alpha",
                                                                                        "beta"}
        assert c.get("/sessions/S1/explain", params={"task": "nope"}, headers=h).json()["kind"] == "unknown_task"
        assert c.get("/sessions/nosuch/explain", params={"task": "eeg_x"}, headers=h).status_code == 404
        assert c.get("/sessions/S1/explain", params={"task": "eeg_x"}).status_code == 401
