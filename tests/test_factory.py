"""The model factory: presets, files and configurations into models, and random checkpoints the embedders load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clef.config import SessionConfig
from clef.embedding import Embedder
from clef.factory import create_model, create_tokenizer, save_random_checkpoint, session_config
from clef.model import SessionTransformer, count_parameters
from tokenizer.presets import load_preset
from tokenizer.tokens import Tokens


def test_create_model_sizes_the_preset_to_its_tokenizer() -> None:
    vq = create_tokenizer("tiny")
    model = create_model("tiny", tokenizer=vq)
    assert isinstance(model, SessionTransformer)
    want = load_preset(SessionConfig, "tiny").with_data(vq.config.quantizer.n_codes, vq.ctx.grid)
    assert model.cfg == want.model
    assert count_parameters(model) == count_parameters(SessionTransformer(want.model))
    small = create_model(want, overrides=None)
    assert small.cfg == want.model
    with pytest.raises(ValueError, match="overrides"):
        session_config(want, overrides={"model": {"depth": 1}})
    deep = create_model("tiny", tokenizer=vq, overrides={"model": {"depth": 1}})
    assert len(deep.blocks.layers) == 1


def test_random_checkpoint_is_loaded_by_the_embedder(tmp_path: Path) -> None:
    ck = save_random_checkpoint("tiny", tmp_path / "st", overrides={"model": {"dim": 32, "depth": 1, "heads": 2}})
    emb = Embedder(ck)
    gf, gt = emb.cfg.model.grid
    rng = np.random.default_rng(0)
    tokens = Tokens(codes=rng.integers(0, emb.cfg.model.vocab_size, (2, gf, gt)).astype(np.int16),
                    token_mask=np.ones((2, gf, gt), bool), n_valid_frames=np.array([80, 80]),
                    source_sha256="0" * 64, source_path="x.edf", window_s=emb.contract.window_s)
    with torch.no_grad():
        (out,) = emb.embed_tokens([tokens])
    assert out.vector.shape == (32,) and np.isfinite(out.vector).all()
