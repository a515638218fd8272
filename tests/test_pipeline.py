"""The trained pipeline on the synthetic hospital: tokens, pretraining signal, embedding from EDF."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clef.embedding import Embedder
from clef.pretrain import load_token_table
from clef.synthetic.hospital import load_truth
from tokenizer import ContractMismatchError, SignalContract, read_recording
from tokenizer.tokens import read_errors


def test_every_session_is_tokenized_with_masks(pipeline, hospital):
    truth = load_truth(hospital)
    table = load_token_table(pipeline.tokens)
    # token paths are relative to the archive root (hospital/edf)
    assert {f"edf/{p}" for p in table.path.tolist()} == set(truth["path"].to_list())
    assert read_errors(pipeline.tokens).height == 0
    assert table.grid == (8, 64) and table.vocab_size == 512
    # 2-4 minute sessions fill 6-12 of the 64 time columns (20 s each) of their one window
    valid_cols = table.valid.reshape(len(table), 8, 64).any(1).sum(1)
    assert valid_cols.min() >= 6 and valid_cols.max() <= 13


def test_pretraining_beats_the_most_common_code(pipeline):
    r = pipeline.pretrain
    # a briefly trained tiny tokenizer uses few codes (the most common one covers 40-60 %
    # of tokens); the transformer must still predict masked tokens clearly better
    assert r.val_masked_acc is not None and r.val_masked_acc > r.baseline_acc + 0.1, (r.val_masked_acc, r.baseline_acc)
    meta = json.loads((pipeline.checkpoint / "meta.json").read_text())
    assert meta["kind"] == "session_transformer" and (pipeline.checkpoint / "tokenizer" / "meta.json").is_file()


def test_embedding_from_edf_matches_tokens_and_is_deterministic(pipeline, hospital):
    truth = load_truth(hospital)
    path = hospital / truth["path"][0]
    emb = Embedder(pipeline.checkpoint)
    a = emb.embed(path)
    b = emb.embed(read_recording(path))
    assert a.dim == 64 and a.n_windows == 1 and np.array_equal(a.vector, b.vector)
    assert a.source_sha256 == b.source_sha256 and len(a.model_id) == 16
    table = load_token_table(pipeline.tokens)
    rows = np.flatnonzero(table.path == truth["path"][0].removeprefix("edf/"))
    assert np.array_equal(emb.tokens_of(path).codes.reshape(len(rows), -1), table.codes[rows])


def test_recording_read_under_another_contract_is_refused(pipeline, hospital):
    path = hospital / load_truth(hospital)["path"][0]
    rec50 = read_recording(path, SignalContract(filters={"notch_freq": 50.0}))
    with pytest.raises(ContractMismatchError, match="another contract"):
        Embedder(pipeline.checkpoint).embed(rec50)



def test_cli_embed_one_writes_the_vector(pipeline, hospital, tmp_path):
    import subprocess
    import sys

    path = hospital / load_truth(hospital)["path"][0]
    vec = tmp_path / "v.npy"
    r = subprocess.run([sys.executable, "-m", "clef", "embed-one", str(path), "--checkpoint", str(pipeline.checkpoint),
                        "--out", str(vec), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(r.stdout)
    assert rec["dim"] == 64 and rec["n_windows"] == 1 and len(rec["vector"]) == 64
    assert np.allclose(np.load(vec), Embedder(pipeline.checkpoint).embed(path).vector, atol=1e-5)
