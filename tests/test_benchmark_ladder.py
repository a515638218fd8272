"""The information-loss ladder's tokenizer rungs: input vs decoded band power, bags of codes, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from benchmark_tasks.baselines.bandpower import feature_names
from benchmark_tasks.baselines.tokenizer_rungs import (
    RUNGS,
    code_histogram_embeddings,
    parse_rung_option,
    rung_features,
    tokenizer_rungs,
)
from clef.reconstruction import Reconstructor
from clef.synthetic.hospital import load_truth

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _two_sessions(hospital: Path) -> pl.DataFrame:
    """A session without findings and one with generalised slowing (different spectral content)."""
    truth = load_truth(hospital)
    normal = truth.filter(pl.col("finding_names").list.len() == 0)
    slow = truth.filter(pl.col("finding_names").list.contains("generalized_slowing"))
    assert normal.height and slow.height, "the test hospital lacks a normal or a slowing session"
    return pl.concat([normal.head(1), slow.head(1)]).select("session_id", "path")


def test_decoded_band_power_is_the_input_s_under_a_perfect_decoder(pipeline, hospital: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With the decoder replaced by the identity (it returns the window it was given), the
    decoded rung equals the input rung: frames, channels, scaling and trimming line up, so
    the gap between the two rungs is the tokenizer's reconstruction alone."""
    path = hospital / _two_sessions(hospital)["path"][0]
    recon = Reconstructor(pipeline.checkpoint)
    real = rung_features(recon.reconstruct(path))
    assert not np.allclose(real.input, real.decoded, equal_nan=True)  # a 30-step tokenizer loses something

    model = recon.tokenizer.model
    seen: list[torch.Tensor] = []
    tokenize = model.tokenize

    def keep_input(x: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(x.clone())
        return tokenize(x, frame_mask)

    monkeypatch.setattr(model, "tokenize", keep_input)
    monkeypatch.setattr(model, "decode_codes", lambda codes: seen.pop(0))
    rec = recon.reconstruct(path)
    assert rec.decoded is not None and rec.decoded.shape == rec.original.shape
    f = rung_features(rec)
    assert f.input.shape == (len(feature_names()),) and np.isfinite(f.input).sum() > 100
    assert np.allclose(f.decoded, f.input, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.array_equal(f.input, real.input)  # the input rung does not depend on the decoder


def test_code_histograms_sum_to_one_and_tell_sessions_apart(pipeline, hospital: Path, tmp_path: Path) -> None:
    sessions = _two_sessions(hospital)
    sets = {s.name: s for s in tokenizer_rungs(pipeline.checkpoint, sessions, hospital, cache_dir=tmp_path)}
    assert list(sets) == list(RUNGS)
    ids = sorted(sessions["session_id"].to_list())
    codes, rows = sets["codes"], sets["code_rows"]
    assert codes.session_ids == ids and codes.dim == 512 and rows.dim == 8 * 512
    assert np.allclose(codes.vectors.sum(1), 1.0) and np.allclose(rows.vectors.sum(1), 1.0)
    # summed over the frequency rows, the per-row histogram is the plain one
    assert np.allclose(rows.vectors.reshape(2, 8, 512).sum(1), codes.vectors, atol=1e-6)
    assert np.abs(codes.vectors[0] - codes.vectors[1]).sum() > 0.1  # different content, different codes
    assert all(s.baseline and s.kind == s.name for s in sets.values())
    # a second run reads the cache: the tokenizer is not run again
    file = next(tmp_path.glob("tokenizer-rungs-v1-*.parquet"))
    assert pl.read_parquet(file).height == 2
    again = code_histogram_embeddings(pipeline.checkpoint, sessions, hospital, per_row=True, cache_dir=tmp_path)
    assert again.name == "code_rows" and np.array_equal(again.vectors, rows.vectors)


def test_rungs_leave_out_unreadable_files_and_reject_unknown_rungs(pipeline, hospital: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.edf").write_bytes(b"not an edf file")
    sessions = pl.DataFrame({"session_id": ["bad", "gone"], "path": ["bad.edf", "gone.edf"]})
    good = _two_sessions(hospital).head(1).with_columns((pl.lit(f"{hospital}/") + pl.col("path")).alias("path"))
    both = pl.concat([sessions, good])
    (s,) = tokenizer_rungs(pipeline.checkpoint, both, tmp_path, rungs=("codes",))
    assert s.session_ids == good["session_id"].to_list()
    with pytest.raises(ValueError, match="rungs among"):
        tokenizer_rungs(pipeline.checkpoint, both, tmp_path, rungs=("wavelets",))
    with pytest.raises(FileNotFoundError, match="tokenizer checkpoint"):
        tokenizer_rungs(tmp_path, both, tmp_path)


def test_rung_option_parsing() -> None:
    assert parse_rung_option("decoded-bandpower=runs/st") == (("decoded_bandpower",), Path("runs/st"))
    assert parse_rung_option("tokenizer-rungs=ck")[0] == RUNGS
    for bad in ("codes", "wavelets=ck", "codes="):
        with pytest.raises(ValueError, match="KIND=CHECKPOINT"):
            parse_rung_option(bad)


def test_benchmark_models_run_each_tokenizer_once(pipeline, hospital: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``clef benchmark run --baseline``: the rungs asked of one checkpoint come from one pass
    over the sessions; rungs of two checkpoints are told apart by the checkpoint's name."""
    import shutil
    from types import SimpleNamespace

    from benchmark_tasks.models import ModelSources, collect_models

    sessions = _two_sessions(hospital)
    suite = SimpleNamespace(labels=sessions.select("session_id"), cohort=sessions, archive=lambda: hospital)
    calls: list[str] = []
    reconstruct = Reconstructor.reconstruct

    def counted(self: Reconstructor, path: Path, *, decode: bool = True) -> object:
        calls.append(str(path))
        return reconstruct(self, path, decode=decode)

    monkeypatch.setattr(Reconstructor, "reconstruct", counted)
    sources = ModelSources(bandpower=False, tokenizer_rungs=[parse_rung_option(f"codes={pipeline.checkpoint}"),
                                                             parse_rung_option(f"decoded-bandpower={pipeline.checkpoint}")])
    models = collect_models(suite, sources)  # type: ignore[arg-type]
    assert [m.name for m in models] == ["decoded_bandpower", "codes"] and len(calls) == 2
    other = shutil.copytree(pipeline.checkpoint / "tokenizer", tmp_path / "tok2")
    sources.tokenizer_rungs.append(parse_rung_option(f"codes={other}"))
    names = [m.name for m in collect_models(suite, sources)]  # type: ignore[arg-type]
    assert names == [f"{pipeline.checkpoint.name}_decoded_bandpower", f"{pipeline.checkpoint.name}_codes", "tok2_codes"]


def test_rungs_resume_after_a_killed_run_and_match_across_workers(pipeline, hospital: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmark_tasks.baselines.tokenizer_rungs as rungs_module

    sessions = _two_sessions(hospital)
    serial = tokenizer_rungs(pipeline.checkpoint, sessions, hospital, rungs=("decoded_bandpower", "codes"))
    parallel = tokenizer_rungs(pipeline.checkpoint, sessions, hospital, rungs=("decoded_bandpower", "codes"),
                               workers=2)
    for a, b in zip(serial, parallel):
        assert a.session_ids == b.session_ids and np.array_equal(a.vectors, b.vectors, equal_nan=True)

    monkeypatch.setattr(rungs_module, "SAVE_EVERY", 1)
    reconstruct, seen, kill_at = Reconstructor.reconstruct, [], [2]

    def killable(self: Reconstructor, path: Path, *, decode: bool = True) -> object:
        seen.append(path)
        if len(seen) == kill_at[0]:
            raise KeyboardInterrupt  # not an unreadable file: the run dies
        return reconstruct(self, path, decode=decode)

    monkeypatch.setattr(Reconstructor, "reconstruct", killable)
    with pytest.raises(KeyboardInterrupt):
        tokenizer_rungs(pipeline.checkpoint, sessions, hospital, cache_dir=tmp_path)
    assert pl.read_parquet(next(tmp_path.glob("tokenizer-rungs-v1-*.parquet"))).height == 1
    seen.clear()
    kill_at[0] = 0
    done = tokenizer_rungs(pipeline.checkpoint, sessions, hospital, cache_dir=tmp_path)
    assert len(seen) == 1  # only the session the killed run had not saved is computed again
    assert [s.name for s in done] == list(RUNGS) and done[1].session_ids == serial[0].session_ids
    assert np.array_equal(done[1].vectors, serial[0].vectors, equal_nan=True)  # decoded band power, as before
