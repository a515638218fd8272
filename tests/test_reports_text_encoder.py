"""Frozen text encoder (all-MiniLM-L6-v2, loaded once for the module) and the trainable report head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from reports import (
    ExtractiveSummariser,
    FrozenTextEncoder,
    ReportEncoder,
    ReportEncoderConfig,
    SummariserConfig,
    TextEncoderConfig,
    TextEncoderError,
    default_text_model_path,
)


@pytest.fixture(scope="module")
def minilm() -> FrozenTextEncoder:
    torch.set_num_threads(1)
    return FrozenTextEncoder(TextEncoderConfig(batch_size=4))


def test_default_model_path_is_the_packaged_minilm() -> None:
    path = default_text_model_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_minilm_similarities_are_sensible(minilm: FrozenTextEncoder) -> None:
    v = minilm.encode(["No epileptiform discharges were seen.", "There were no epileptiform abnormalities.",
                       "The patient takes levetiracetam.", "Generalized slowing of the background.",
                       "Diffuse theta and delta slowing."])
    assert v.shape == (5, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.3
    assert sim[3, 4] > sim[3, 2]
    raw = minilm.encode(["No epileptiform discharges were seen."], normalize=False)
    assert abs(np.linalg.norm(raw) - 1.0) > 1e-3
    np.testing.assert_allclose(raw / np.linalg.norm(raw), v[:1], atol=1e-5)


def test_encode_tokens_shapes_mask_and_batching(minilm: FrozenTextEncoder) -> None:
    texts = ["short", "a much longer sentence about generalized slowing of the background activity", "mid length",
             "x", "another one in a second batch"]
    feats, mask = minilm.encode_tokens(texts)
    assert feats.dtype == torch.float32 and mask.dtype == torch.bool
    assert feats.shape[:2] == mask.shape and feats.shape[0] == 5 and feats.shape[2] == minilm.dim == 384
    assert mask[1].all() and mask[0].sum() < mask[1].sum()
    assert torch.all(feats[~mask] == 0)
    assert not feats.requires_grad
    # batching does not change the pooled result
    pooled = (feats * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    pooled = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    np.testing.assert_allclose(pooled, minilm.encode(texts), atol=1e-5)
    f8, _ = FrozenTextEncoder(TextEncoderConfig(max_length=8)).encode_tokens(texts)
    assert f8.shape[1] == 8


def test_frozen_and_input_checks(minilm: FrozenTextEncoder) -> None:
    assert not any(p.requires_grad for p in minilm.model.parameters())
    assert not minilm.model.training
    f, m = minilm.encode_tokens([])
    assert f.shape == (0, 0, 384) and m.shape == (0, 0)
    assert minilm.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match="single str"):
        minilm.encode("one text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must all be str"):
        minilm.encode(["ok", 3])  # type: ignore[list-item]


def test_missing_or_broken_model_dirs(tmp_path: Path) -> None:
    with pytest.raises(TextEncoderError, match="does not exist"):
        FrozenTextEncoder(TextEncoderConfig(model_path=str(tmp_path / "nope")))
    with pytest.raises(TextEncoderError, match="no config.json"):
        FrozenTextEncoder(TextEncoderConfig(model_path=str(tmp_path)))
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(TextEncoderError, match="could not load"):
        FrozenTextEncoder(TextEncoderConfig(model_path=str(tmp_path)))
    with pytest.raises(ValidationError):
        TextEncoderConfig(max_length=2)


def test_encoder_decoder_models_use_their_encoder(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        T5Config,
        T5ForConditionalGeneration,
    )

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["generalized slowing is present", "no seizures"],
                            trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    cfg = T5Config(vocab_size=len(fast), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1,
                   num_heads=2, pad_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    fast.save_pretrained(tmp_path)
    T5ForConditionalGeneration(cfg).save_pretrained(tmp_path)
    enc = FrozenTextEncoder(TextEncoderConfig(model_path=str(tmp_path)))
    assert enc.dim == 16
    assert enc.encode(["generalized slowing is present", "no seizures"]).shape == (2, 16)


def test_extractive_ranking_with_the_encoder(minilm: FrozenTextEncoder) -> None:
    text = ("The patient was cooperative. Frequent left temporal sharp waves are seen. The EKG showed a regular "
            "rhythm of 70 per minute. Moderate diffuse slowing of the background. Thank you for the referral.")
    s = ExtractiveSummariser(SummariserConfig(max_sentences=2), encoder=minilm)
    out = s.summarise(text)
    assert out == "Frequent left temporal sharp waves are seen. Moderate diffuse slowing of the background."
    assert s.summarise(text) == out


# ------------------------------------------------------------------------------ ReportEncoder


def test_report_encoder_shapes_masking_and_grads() -> None:
    torch.manual_seed(0)
    enc = ReportEncoder(ReportEncoderConfig(in_dim=24, dim=32, depth=2, heads=4, dropout=0.0)).eval()
    feats = torch.randn(3, 7, 24)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [0] * 7], dtype=torch.bool)
    out = enc(feats, mask)
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    assert torch.all(out[2] == 0)  # a report without tokens pools to zero, not NaN
    changed = feats.clone()
    changed[1, 4:] = 100.0  # padding must not matter
    assert torch.allclose(enc(changed, mask)[1], out[1], atol=1e-5)
    pooled, tokens = enc(feats, mask, return_features=True)
    assert tokens.shape == (3, 7, 32) and torch.allclose(pooled, out)
    assert enc(feats).shape == (3, 32)  # no mask: all tokens real
    enc.train()
    enc(feats, mask).sum().backward()
    assert all(p.grad is not None for p in enc.parameters())
    with pytest.raises(ValueError, match=r"\(B, L, 24\)"):
        enc(torch.randn(3, 7, 10))
    with pytest.raises(ValueError, match="mask must be"):
        enc(feats, mask[:, :3])


def test_report_encoder_config() -> None:
    c = ReportEncoderConfig()
    assert (c.in_dim, c.dim, c.depth, c.heads, c.dropout) == (384, 256, 4, 4, 0.1)
    assert len(ReportEncoder(c).encoder.layers) == 4
    with pytest.raises(ValidationError, match="divisible"):
        ReportEncoderConfig(dim=30, heads=4)
    with pytest.raises(ValidationError):
        ReportEncoderConfig(depth=0)
    with pytest.raises(ValidationError):
        ReportEncoderConfig(width=3)  # type: ignore[call-arg]


def test_report_encoder_trains_on_minilm_features(minilm: FrozenTextEncoder) -> None:
    feats, mask = minilm.encode_tokens(["Generalized slowing.", "No epileptiform discharges were seen."])
    head = ReportEncoder(ReportEncoderConfig(dim=64, depth=1, heads=4))
    out = head(feats, mask)  # frozen features (no_grad tensors) feed a trainable head
    out.pow(2).mean().backward()
    assert out.shape == (2, 64) and head.proj.weight.grad is not None
