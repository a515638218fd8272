"""ehr.encoder: the EHR set encoder is a set function; the augmentation only removes codes."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from pydantic import ValidationError

from ehr import CodeVocab
from ehr.encoder import EHREncoder, EHREncoderConfig, augment_codes

SMALL = EHREncoderConfig(dim=32, depth=2, heads=4, dropout=0.1, drop_prob=0.3, max_len=84)


def _batch(seed: int = 0, b: int = 4, length: int = 12, vocab: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (b, length), generator=g)
    lengths = torch.tensor([length, length - 3, 5, 1])[:b]
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return torch.where(mask, ids, torch.zeros_like(ids)), mask


def test_config_is_strict() -> None:
    assert EHREncoderConfig().model_dump() == {"dim": 256, "depth": 4, "heads": 4, "dropout": 0.1,
                                               "drop_prob": 0.1, "max_len": 84}
    with pytest.raises(ValidationError, match="extra"):
        EHREncoderConfig(dims=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="heads must divide dim"):
        EHREncoderConfig(dim=30, heads=4)
    with pytest.raises(ValueError, match="vocab_size"):
        EHREncoder(1, SMALL)


def test_permutation_and_padding_invariance() -> None:
    torch.manual_seed(0)
    enc = EHREncoder(50, SMALL).eval()
    ids, mask = _batch()
    with torch.no_grad():
        z = enc(ids, mask)
        assert z.shape == (4, 32) and torch.isfinite(z).all()
        # shuffle the real tokens of every row
        g = torch.Generator().manual_seed(1)
        perm_ids = ids.clone()
        for i in range(ids.shape[0]):
            n = int(mask[i].sum())
            perm_ids[i, :n] = ids[i, :n][torch.randperm(n, generator=g)]
        assert torch.allclose(enc(perm_ids, mask), z, atol=1e-5)
        # a fully shuffled layout (padding in the middle) too
        cols = torch.randperm(ids.shape[1], generator=g)
        assert torch.allclose(enc(ids[:, cols], mask[:, cols]), z, atol=1e-5)
        # extra padding changes nothing; mask defaults to ids != 0
        pad = torch.zeros(4, 7, dtype=torch.long)
        assert torch.allclose(enc(torch.cat([ids, pad], 1)), z, atol=1e-5)


def test_empty_rows_and_input_checks() -> None:
    enc = EHREncoder(50, SMALL).eval()
    ids = torch.tensor([[5, 6, 0], [0, 0, 0]])
    with torch.no_grad():
        z = enc(ids)
    assert torch.isfinite(z).all() and torch.equal(z[1], torch.zeros(32))
    with pytest.raises(ValueError, match="max_len"):
        enc(torch.ones(1, 85, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids must lie"):
        enc(torch.tensor([[50]]))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        enc(torch.tensor([1, 2]))


def test_augment_only_removes_and_keeps_one() -> None:
    ids, mask = _batch(length=20)
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        new_ids, new_mask = augment_codes(ids, mask, drop_prob=0.9, generator=g, first_code_id=0)
        assert new_ids.shape == ids.shape and new_mask.dtype == torch.bool
        for i in range(ids.shape[0]):
            before = Counter(ids[i][mask[i]].tolist())
            after = Counter(new_ids[i][new_mask[i]].tolist())
            assert sum(after.values()) >= 1 and not (after - before)
            n = int(new_mask[i].sum())
            assert new_mask[i, :n].all() and not new_mask[i, n:].any() and (new_ids[i, n:] == 0).all()
    # drop_prob 0: only shuffled, and reproducible with a generator
    a = augment_codes(ids, mask, drop_prob=0.0, generator=torch.Generator().manual_seed(3))
    b = augment_codes(ids, mask, drop_prob=0.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0])
    for i in range(ids.shape[0]):
        assert sorted(a[0][i][a[1][i]].tolist()) == sorted(ids[i][mask[i]].tolist())
    # empty rows stay empty; bad arguments are explained
    _, e_mask = augment_codes(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.bool),
                                  drop_prob=0.5)
    assert not e_mask.any()
    with pytest.raises(ValueError, match="drop_prob"):
        augment_codes(ids, mask, drop_prob=1.0)


def test_augment_protects_demographics() -> None:
    ids = torch.tensor([[2, 3, 4, 10, 11, 12, 13], [2, 3, 4, 0, 0, 0, 0]])
    mask = ids != 0
    for seed in range(10):
        new_ids, new_mask = augment_codes(ids, mask, drop_prob=0.99, generator=torch.Generator().manual_seed(seed),
                                          first_code_id=5)
        for i in range(2):
            assert {2, 3, 4} <= set(new_ids[i][new_mask[i]].tolist())


def test_training_mode_drops_codes_and_trains() -> None:
    lists = [["age:30-39", "sex:F", "race:white", "icd:G40.909", "icd:I10", "atc:N03AX14"],
             ["age:80-89", "sex:M", "race:black", "icd:G30.9", "atc:N06DA02"]]
    vocab = CodeVocab.build(lists)
    enc = EHREncoder.from_vocab(vocab, SMALL)
    assert enc.first_code_id == vocab.first_code_id and enc.output_dim == 32
    ids, mask = vocab.encode_batch(lists)
    enc.train()
    z1 = enc(ids, mask, generator=torch.Generator().manual_seed(0))
    z1.pow(2).mean().backward()
    grads = [p.grad for p in enc.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert enc.embed.weight.grad[0].abs().sum() == 0  # padding row is never updated
    enc.eval()
    with torch.no_grad():
        assert torch.allclose(enc(ids, mask), enc(ids, mask))
