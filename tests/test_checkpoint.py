import json
import os
import shutil

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
    assert ck.path == path and ck.kind == "vqgan"
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
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: contract.json does not match the contract digest recorded in meta.json"
    assert info.value.path == str(path)
    (path / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="missing meta.json"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="found nothing"):
        load_checkpoint(tmp_path / "nope")


# ---- what mutation testing showed unchecked (bench/RESULTS.md, "Mutation testing") ---------

def test_errors_name_the_checkpoint(tmp_path):
    path, _ = _save(tmp_path / "ckpt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, kind="session_transformer")
    assert info.value.path == str(path) and str(info.value).startswith(f"{path}: ")
    raw = bytearray((path / "model.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == (f"{path}: model.safetensors does not match the SHA-256 recorded in meta.json "
                               "(tampered with or corrupted); refusing to load")
    (path / "config.yaml").unlink()
    (path / "contract.json").unlink()
    with pytest.raises(CheckpointError, match=r"incomplete checkpoint: missing config\.yaml, contract\.json$") as info:
        load_checkpoint(path)
    assert info.value.path == str(path)
    with pytest.raises(CheckpointError, match="expected a checkpoint directory, found a file$"):
        load_checkpoint(path / "meta.json")
    with pytest.raises(CheckpointError, match="expected a checkpoint directory, found nothing$") as info:
        load_checkpoint(path / "nope")
    assert info.value.path == str(path / "nope")


def test_checkpoint_files_keep_their_format(tmp_path):
    """meta.json (indented, sorted keys) and config.yaml (sorted keys) are read by people and tools."""
    import re

    import yaml

    from tokenizer.checkpoint_io import code_version

    path, _ = _save(tmp_path / "deep" / "er" / "ckpt")  # missing parents are made
    meta = json.loads((path / "meta.json").read_text())
    assert (path / "meta.json").read_text() == json.dumps(meta, indent=2, sort_keys=True) + "\n"
    config = {"name": "tiny", "dim": 3}
    assert (path / "config.yaml").read_text() == yaml.safe_dump(config, sort_keys=True)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["created"])
    assert meta["code_version"] == code_version() != "unknown"
    bare = save_checkpoint(tmp_path / "bare", kind="vqgan", config=config, contract=SignalContract(),
                           state_dict={"w": torch.zeros(2)})
    assert json.loads((bare / "meta.json").read_text())["training_data_digest"] == ""
    assert (bare / "config.yaml").read_text() == "dim: 3\nname: tiny\n"  # sorted, whatever the order given


def test_a_checkpoint_without_a_recorded_contract_digest_still_loads(tmp_path):
    """Checkpoints written before the contract digest was recorded load (nothing to compare)."""
    path, sd = _save(tmp_path / "ckpt")
    meta = json.loads((path / "meta.json").read_text())
    del meta["contract_digest"]
    (path / "meta.json").write_text(json.dumps(meta))
    assert torch.equal(load_checkpoint(path).state_dict["w"], sd["w"])


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(p.stdout)


def test_recover_checkpoint_puts_back_the_newest_complete_previous_one(tmp_path, caplog):
    from tokenizer.checkpoint_io import recover_checkpoint

    path, _ = _save(tmp_path / "ckpt")
    assert not recover_checkpoint(tmp_path / "no" / "such" / "ckpt")  # nothing where its folder is missing
    # set aside as a writer does (.<name>.old-<pid>-<ns>): the newest has the larger time, not pid
    older = save_checkpoint(tmp_path / "older", kind="vqgan", config={}, contract=SignalContract(),
                            state_dict={"w": torch.zeros(1)}, extra_meta={"step": 3})
    older.rename(tmp_path / ".ckpt.old-900-100")
    manual = save_checkpoint(tmp_path / "manual", kind="vqgan", config={}, contract=SignalContract(),
                             state_dict={"w": torch.zeros(1)}, extra_meta={"step": 1})
    manual.rename(tmp_path / ".ckpt.old-manual")  # no number: the oldest
    assert not recover_checkpoint(path)  # nothing to do while it exists, previous ones or not
    assert (tmp_path / ".ckpt.old-900-100").is_dir() and (tmp_path / ".ckpt.old-manual").is_dir()
    path.rename(tmp_path / ".ckpt.old-12-200")  # the newest, set aside by a writer killed mid-replace
    (tmp_path / ".ckpt.old-13-300").mkdir()  # incomplete: never put back
    with caplog.at_level("WARNING", logger="tokenizer.checkpoint_io"):
        assert recover_checkpoint(path)
    assert json.loads((path / "meta.json").read_text())["step"] == 7
    assert f"checkpoint {path} was missing (a writer was killed while replacing it); restored the previous one " \
           "(step 7)" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ckpt.old-13-300", ".ckpt.old-900-100",
                                                          ".ckpt.old-manual", "ckpt"]
    shutil.rmtree(path)
    assert recover_checkpoint(path) and json.loads((path / "meta.json").read_text())["step"] == 3
    for p in (tmp_path / ".ckpt.old-manual", path):
        shutil.rmtree(p)
    assert not recover_checkpoint(path)  # only an incomplete one is left


def test_clear_leftovers_removes_what_dead_writers_left(tmp_path):
    from tokenizer.atomic import remove_stale_temps
    from tokenizer.checkpoint_io import clear_leftovers

    path, _ = _save(tmp_path / "ckpt")
    dead, alive = _dead_pid(), os.getpid()
    for name in (f".ckpt.old-{dead}-1", f".ckpt.tmp-{dead}-2", f".ckpt.staging-{dead}-3", f".ckpt.tmp-{alive}-4"):
        (tmp_path / name).mkdir()
    (tmp_path / f".ckpt.tmp-{dead}-5").write_text("a file")
    clear_leftovers(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".ckpt.tmp-{alive}-4", "ckpt"]  # a live writer's kept
    clear_leftovers(tmp_path / "no" / "such" / "ckpt")  # a missing folder is not an error
    assert remove_stale_temps(tmp_path, ".ckpt.tmp-*") == []
