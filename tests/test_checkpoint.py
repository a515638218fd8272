import json

import pytest
import torch

from tokenizer import SignalContract
from tokenizer.checkpoint_io import CheckpointError, load_checkpoint, save_checkpoint


def _save(path, **kw):
    sd = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(3)}
    return save_checkpoint(path, kind="vqgan", config={"dim": 3, "name": "tiny"}, contract=SignalContract(),
                           state_dict=sd, data_digest="abc", extra_meta={"step": 7}, **kw), sd


def test_round_trip(tmp_path):
    path, sd = _save(tmp_path / "ckpt")
    assert sorted(p.name for p in path.iterdir()) == ["config.yaml", "contract.json", "meta.json", "model.safetensors"]
    ck = load_checkpoint(path, kind="vqgan")
    assert ck.config == {"dim": 3, "name": "tiny"} and ck.contract == SignalContract()
    assert torch.equal(ck.state_dict["w"], sd["w"]) and ck.meta["step"] == 7 and ck.meta["training_data_digest"] == "abc"
    # overwrite in place keeps a complete checkpoint and leaves no temp dirs
    _save(tmp_path / "ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_tampered_weights_are_refused(tmp_path):
    path, _ = _save(tmp_path / "ckpt")
    raw = bytearray((path / "model.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="tampered"):
        load_checkpoint(path)


def test_wrong_kind_missing_files_and_contract_edit(tmp_path):
    path, _ = _save(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="'session_transformer' checkpoint expected, found 'vqgan'"):
        load_checkpoint(path, kind="session_transformer")
    c = json.loads((path / "contract.json").read_text())
    c["sfreq"] = 250.0
    (path / "contract.json").write_text(json.dumps(c))
    with pytest.raises(CheckpointError, match="contract digest"):
        load_checkpoint(path)
    (path / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="missing meta.json"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="found nothing"):
        load_checkpoint(tmp_path / "nope")
