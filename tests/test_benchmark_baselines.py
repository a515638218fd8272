"""Baselines: band-power features, windowed short-window models, the braindecode adapter, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from benchmark_tasks.baselines.bandpower import (
    bandpower_embeddings,
    bandpower_features,
    feature_names,
    session_files,
    spectrum_features,
)
from benchmark_tasks.baselines.windowed import WindowedEmbedder, sliding_windows, windowed_embeddings
from tests.factories import micro_config
from tokenizer.multitaper import CANONICAL_BANDS

CHANNELS = ("Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T3", "C3", "Cz", "C4", "T4", "T5", "P3", "Pz", "P4", "T6",
            "O1", "O2")


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 60 s EDF sessions: a normal one (9.5 Hz PDR) and one with diffuse slowing; and one bad file."""
    from clef.synthetic.eeg import simulate_eeg
    from clef.synthetic.spec import PlantedFinding, SessionSpec
    from tokenizer.edf_writer import EDFSignal, write_edf

    root = tmp_path_factory.mktemp("bp_archive")
    specs = {"S1": SessionSpec("S1", 60.0, 30.0, "routine", (), 60.0, 1),
             "S2": SessionSpec("S2", 60.0, 30.0, "icu", (PlantedFinding("generalized_slowing", 1.0),
                                                           PlantedFinding("pdr_slowing", 1.0)), 60.0, 2)}
    for sid, spec in specs.items():
        data, _ = simulate_eeg(spec, 200.0)
        write_edf(root / "edf" / f"{sid}.edf", [EDFSignal(f"EEG {c}-REF", data[k], 200.0, physical_min=-3000,
                                                          physical_max=3000) for k, c in enumerate(CHANNELS)])
    (root / "edf" / "BAD.edf").write_bytes(b"not an edf file")
    return root


def _sessions() -> pl.DataFrame:
    return pl.DataFrame({"session_id": ["S1", "S2", "BAD", "GONE"],
                         "path": ["edf/S1.edf", "edf/S2.edf", "edf/BAD.edf", "edf/GONE.edf"]})


def test_spectrum_features_on_a_known_spectrum() -> None:
    freqs = np.arange(0, 32, 0.25)
    psd = np.ones((19, len(freqs)))
    post = [CHANNELS.index(c) for c in ("O1", "O2", "P3", "P4")]
    psd[np.ix_(post, np.flatnonzero((freqs >= 9.5) & (freqs < 9.75)))] = 50.0
    psd[CHANNELS.index("T3")] *= 4.0  # left temporal 4x the right
    mask = np.ones(19, bool)
    mask[CHANNELS.index("Fz")] = False
    v = dict(zip(feature_names(CHANNELS), spectrum_features(psd, freqs, CHANNELS, mask)))
    assert len(v) == 19 * 4 + 19 + 2 + 8 * 4 == 129
    assert v["pdr_hz"] == 9.5 and v["pdr_rel"] > 0.5
    assert v["asym_delta_T3_T4"] == pytest.approx(np.log10(4.0))
    assert v["asym_alpha_O1_O2"] == pytest.approx(0.0)
    assert sum(v[f"rel_{b}_C3"] for b in CANONICAL_BANDS) == pytest.approx(1.0)
    assert v["rel_theta_C3"] == pytest.approx(16 / 118)  # 4-8 Hz bins over 0.5-30 Hz bins
    assert np.isnan(v["rel_alpha_Fz"]) and np.isnan(v["logpow_Fz"])


def test_bandpower_features_see_slowing(tiny_archive: Path) -> None:
    names = feature_names()
    a = dict(zip(names, bandpower_features(tiny_archive / "edf" / "S1.edf")))
    b = dict(zip(names, bandpower_features(tiny_archive / "edf" / "S2.edf")))
    assert 8.0 <= a["pdr_hz"] <= 11.0
    slow = np.mean([b[f"rel_delta_{c}"] + b[f"rel_theta_{c}"] for c in CHANNELS])
    normal = np.mean([a[f"rel_delta_{c}"] + a[f"rel_theta_{c}"] for c in CHANNELS])
    assert slow > normal


def test_bandpower_embeddings_cached(tiny_archive: Path, tmp_path: Path) -> None:
    e = bandpower_embeddings(_sessions(), tiny_archive, cache_dir=tmp_path)
    assert e.session_ids == ["S1", "S2"] and e.dim == 129 and e.baseline and e.kind == "bandpower"
    assert (tmp_path / "bandpower-v1.parquet").is_file()
    again = bandpower_embeddings(_sessions(), tiny_archive, cache_dir=tmp_path)  # from the cache
    assert np.allclose(again.vectors, e.vectors, equal_nan=True)


class TinyNet(nn.Module):
    """(B, 19, n) → (B, 4): log power of four channel groups."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, i::4].pow(2).mean((1, 2)).log1p() for i in range(4)], 1)


def test_sliding_windows_and_aggregation() -> None:
    data = np.arange(2 * 1000, dtype=np.float32).reshape(2, 1000)
    w, starts = sliding_windows(data, 100.0, window_s=3.0, step_s=2.0)
    assert w.shape == (4, 2, 300) and starts.tolist() == [0, 200, 400, 600]
    assert np.array_equal(w[1], data[:, 200:500])
    mask = np.ones(1000, bool)
    mask[:450] = False
    _, kept = sliding_windows(data, 100.0, window_s=3.0, step_s=2.0, sample_mask=mask)
    assert kept.tolist() == [400, 600]
    short, _ = sliding_windows(data[:, :100], 100.0, window_s=3.0)
    assert short.shape == (1, 2, 300)
    emb = WindowedEmbedder(nn.Sequential(nn.Flatten(), nn.Linear(600, 3)), window_s=3.0, batch_size=2)
    vec, per_window = emb.embed(data, 100.0)
    assert per_window.shape == (3, 3) and np.allclose(vec, per_window.mean(0), atol=1e-5)


def test_windowed_embeddings_on_files(tiny_archive: Path) -> None:
    e = windowed_embeddings(TinyNet(), _sessions(), tiny_archive, name="tiny", window_s=10.0, input_scale=0.01)
    assert e.session_ids == ["S1", "S2"] and e.dim == 4 and e.baseline
    assert np.isfinite(e.vectors).all()


def test_braindecode_adapter() -> None:
    from benchmark_tasks.baselines.braindecode_models import load_braindecode_model, parse_braindecode_option

    assert parse_braindecode_option("labram=/w/l.safetensors") == ("labram", Path("/w/l.safetensors"))
    with pytest.raises(ValueError, match="unknown model"):
        parse_braindecode_option("eegnet=/w")
    with pytest.raises(ValueError, match="NAME=WEIGHTS"):
        parse_braindecode_option("labram")
    pytest.importorskip("braindecode", reason="braindecode needs torchaudio, which cannot be imported here")
    model = load_braindecode_model("labram", None, channels=CHANNELS)
    out = model(torch.zeros(2, 19, 2000))
    assert out.ndim == 2 and out.shape[0] == 2


@pytest.fixture(scope="module")
def stage1_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight tiny session transformer with a micro tokenizer inside: what a
    stage-1 checkpoint holds, built in a second (the embedding paths need no training)."""
    from clef.factory import save_random_checkpoint

    torch.manual_seed(0)
    return save_random_checkpoint("tiny", tmp_path_factory.mktemp("stage1") / "pretrain_tiny",
                                  tokenizer=micro_config())


def test_checkpoint_and_random_encoder(stage1_checkpoint: Path, tiny_archive: Path, tmp_path: Path) -> None:
    from benchmark_tasks.embeddings import embed_checkpoint

    s = _sessions().head(2)
    e = embed_checkpoint(stage1_checkpoint, s, tiny_archive, cache_dir=tmp_path)
    r = embed_checkpoint(stage1_checkpoint, s, tiny_archive, random_init=True, cache_dir=tmp_path)
    assert e.session_ids == r.session_ids == ["S1", "S2"] and e.dim == r.dim
    assert not np.allclose(e.vectors, r.vectors) and r.baseline and r.model_id.startswith("random0-")
    assert e.name == "pretrain_tiny" and r.name == "random_pretrain_tiny" and not e.baseline
    again = embed_checkpoint(stage1_checkpoint, s, tiny_archive, cache_dir=tmp_path)
    assert np.allclose(again.vectors, e.vectors)
    # the random draw is seeded: the same seed gives the same baseline, another seed another
    r0 = embed_checkpoint(stage1_checkpoint, s, tiny_archive, random_init=True, cache_dir=tmp_path / "r0")
    r1 = embed_checkpoint(stage1_checkpoint, s, tiny_archive, random_init=True, seed=1, cache_dir=tmp_path / "r1")
    assert np.allclose(r0.vectors, r.vectors) and not np.allclose(r1.vectors, r.vectors)


def test_session_files_keeps_found_files_and_warns_once_for_missing(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a.edf").write_bytes(b"x" * 10)
    (tmp_path / "b.edf").write_bytes(b"y" * 20)
    sessions = pl.DataFrame({"session_id": ["s2", "s1", "s3", "s4", "s1"],
                             "path": ["b.edf", "a.edf", "gone.edf", None, "a.edf"]})
    with caplog.at_level("WARNING"):
        found = session_files(sessions, tmp_path, "band power")
    assert [(sid, p.name) for sid, p, _ in found] == [("s1", "a.edf"), ("s2", "b.edf")]
    assert found[0][2] != found[1][2] and "|10|" in found[0][2]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"band power: 1 of 3 session files not found under {tmp_path}"]
