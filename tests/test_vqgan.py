"""VQGAN tokenizer: windows, cache, quantiser, losses, model shapes, checkpoints, training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.factories import MICRO, micro_config, write_archive
from tokenizer import CANONICAL_CHANNELS, SignalContract, read_recording
from tokenizer.presets import load_preset, preset_files
from tokenizer.spectrogram_cache import SpectrogramCache, cache_key, compute_spectrogram, find_recordings
from tokenizer.vqgan import (
    VQGAN,
    PatchDiscriminator,
    QuantizerConfig,
    VectorQuantizerEMA,
    VQGANConfig,
    build_context,
    count_parameters,
    interchannel_l1,
    masked_l1,
)
from tokenizer.windows import WindowSpec, n_windows, split_windows, token_mask_np


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    write_archive(root)
    (root / "notes.txt").write_text("not a recording")
    return root


# ---------------------------------------------------------------- configs


def test_every_shipped_config_parses_and_builds() -> None:
    names = {p.stem for p in preset_files(VQGANConfig)}
    assert {"tiny", "base"} <= names
    for p in preset_files(VQGANConfig):
        ctx = build_context(load_preset(VQGANConfig, p))
        assert ctx.window_frames == 1280
    base, tiny = build_context(load_preset(VQGANConfig, "base")), build_context(load_preset(VQGANConfig, "tiny.yaml"))
    assert base.grid == (16, 128) and base.n_tokens == 2048
    assert (base.config.quantizer.n_codes, base.config.quantizer.dim) == (8192, 32)
    assert tiny.grid == (8, 64) and tiny.n_tokens == 512


def test_config_rejects_unknown_keys_and_bad_grids() -> None:
    with pytest.raises(ValueError, match="extra"):
        VQGANConfig.model_validate({"model": {"chanels": [8]}})
    with pytest.raises(ValueError, match="divisible"):
        build_context(VQGANConfig.model_validate({"model": {"down": [[3, 2]], "channels": [8, 8],
                                                            "num_res_blocks": [1, 1]}}))
    with pytest.raises(FileNotFoundError, match="tiny"):
        load_preset(VQGANConfig, "no-such-config")


# ---------------------------------------------------------------- windows


@pytest.mark.parametrize("seconds,expected", [(700, 1), (1280, 1), (2000, 2)])
def test_windows_short_exact_long(seconds: int, expected: int) -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(-60, 60, (19, 128, seconds)).astype(np.float16)
    fm = np.ones(seconds, bool)
    fm[:2] = False
    cm = np.ones(19, bool)
    cm[4] = False
    spec = WindowSpec(1280, (-40.0, 40.0), 40.0)
    assert n_windows(seconds, 1280) == expected
    x, masks = split_windows(values, fm, cm, spec)
    assert x.shape == (expected, 19, 128, 1280) and x.dtype == np.float32
    assert masks.shape == (expected, 1280)
    assert np.abs(x).max() <= 1.0
    assert (x[:, 4] == 0).all()  # absent channel zero-filled
    last_valid = seconds - (expected - 1) * 1280
    assert masks[-1, :last_valid][2 if expected == 1 else 0:].all()
    assert not masks[-1, last_valid:].any()  # padding masked
    assert (x[-1, :, :, last_valid:] == 0).all()
    np.testing.assert_allclose(x[0, 0, :, 10], np.clip(values[0, :, 10].astype(np.float32), -40, 40) / 40)
    tm = token_mask_np(masks, (16, 128))
    assert tm.shape == (expected, 16, 128)
    # a token is valid when its 10 s span has a valid frame
    assert tm[-1, :, : -(-last_valid // 10)].all() and not tm[-1, :, -(-last_valid // 10):].any()


def test_recording_windows_and_masks(archive: Path) -> None:
    contract = SignalContract()
    files = find_recordings(archive)
    assert [f.name for f in files] == ["session_1.edf", "session_0.edf", "session_2.EDF"]
    cache = SpectrogramCache(archive.parent / "cache_windows", contract)
    for f, seconds, n_win in zip(files, (1280, 300, 1500), (1, 1, 2)):
        spec, _ = cache.load_or_compute(f)
        assert spec.values.shape == (19, 128, seconds) and spec.values.dtype == np.float16
        x, masks = split_windows(spec.values, spec.frame_mask, spec.channel_mask, WindowSpec.from_contract(contract))
        assert x.shape[0] == n_win
        assert masks.sum() == spec.frame_mask.sum()
        if f.name == "session_0.edf":
            assert (~spec.channel_mask).sum() == 2
            assert (x[:, ~spec.channel_mask] == 0).all()


# ---------------------------------------------------------------- cache


def test_cache_hits_and_invalidation(archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = find_recordings(archive)[1]
    contract = SignalContract()
    cache = SpectrogramCache(tmp_path, contract)
    first, hit = cache.load_or_compute(f)
    assert not hit
    again, hit = cache.load_or_compute(f)
    assert hit and np.array_equal(first.values, again.values)
    assert len(list(tmp_path.rglob("*.npz"))) == 1
    sha = first.source_sha256
    changed = [
        SignalContract(spectrogram={"bandwidth": 2.0}),
        SignalContract(spectrogram={"clip_db": (-30.0, 30.0)}),
        SignalContract(filters={"notch_freq": 50.0}),
        SignalContract(window_s=640.0),
    ]
    keys = {cache_key(sha, c) for c in changed} | {cache_key(sha, contract)}
    assert len(keys) == len(changed) + 1
    other = SpectrogramCache(tmp_path, changed[0])
    assert other.get(sha) is None
    _, hit = other.load_or_compute(f)
    assert not hit and len(list(tmp_path.rglob("*.npz"))) == 2
    # the code version of the spectrogram is part of the key
    import tokenizer.spectrogram_cache as sc

    old = cache_key(sha, contract)
    monkeypatch.setattr(sc, "SPECTROGRAM_VERSION", sc.SPECTROGRAM_VERSION + 1)
    assert cache_key(sha, contract) != old and cache.get(sha) is None
    monkeypatch.undo()
    assert cache_key(sha, contract) == old
    # a corrupted entry is recomputed, not trusted
    entry = cache.path_for(sha)
    entry.write_bytes(b"garbage")
    fixed, hit = cache.load_or_compute(f)
    assert not hit and np.array_equal(fixed.values, first.values)


def test_cached_spectrogram_numbers_are_pinned_to_their_version(tmp_path: Path) -> None:
    """The numbers a cache entry holds are pinned for the current ``SPECTROGRAM_VERSION``.

    Fails when a change to the read (mapping, units, resampling, filters) or to the
    multitaper estimate moves them: bump ``tokenizer.spectrogram_cache.SPECTROGRAM_VERSION``
    (every cache entry is then recomputed) and pin the new numbers under it.
    """
    import tokenizer.spectrogram_cache as sc
    from clef.synthetic.recordings import eeg_signals, make_edf
    from tokenizer.multitaper import CANONICAL_BANDS

    pinned = {1: {"bands": {"delta": -11.936, "theta": -11.673, "alpha": 0.989, "beta": -12.154},
                  "channel_means": [-10.053, -10.088, -10.036, -10.076, -10.114, -10.001, -10.129, -10.127,
                                    -10.043, -10.039, -10.083, -10.21, -9.945, -10.145, -10.069, -9.978,
                                    -10.036, -10.083, -10.054],
                  "values": {(0, 2, 10): -14.9453125, (5, 40, 50): 27.546875, (10, 39, 60): 27.46875,
                             (18, 100, 100): -10.015625, (7, 20, 5): -15.765625}}}
    assert sc.SPECTROGRAM_VERSION in pinned, "pin the numbers of the new SPECTROGRAM_VERSION here"
    ref = pinned[sc.SPECTROGRAM_VERSION]
    f = make_edf(tmp_path / "pin.edf", eeg_signals(seconds=120, sfreq=256, seed=0))
    spec, _ = SpectrogramCache(tmp_path / "cache", SignalContract()).load_or_compute(f)
    v = spec.values.astype(np.float64)[:, :, spec.frame_mask]
    freqs = np.arange(v.shape[1]) * 0.25
    bands = {k: float(v[:, (freqs >= a) & (freqs < b)].mean()) for k, (a, b) in CANONICAL_BANDS.items()}
    moved = "the cached spectrogram's numbers moved: bump SPECTROGRAM_VERSION and pin them"
    assert bands == pytest.approx(ref["bands"], abs=0.02), moved
    assert v.mean(axis=(1, 2)) == pytest.approx(ref["channel_means"], abs=0.02), moved
    assert {p: float(spec.values[p]) for p in ref["values"]} == pytest.approx(ref["values"], abs=0.05), moved


# ---------------------------------------------------------------- quantiser


def test_quantizer_kmeans_init_ema_and_straight_through() -> None:
    torch.manual_seed(0)
    q = VectorQuantizerEMA(QuantizerConfig(n_codes=4, dim=2, decay=0.5, kmeans_iters=5))
    centres = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]])
    z = centres[torch.arange(64) % 4] + 0.1 * torch.randn(64, 2)
    z = z.T.reshape(1, 2, 8, 8).clone().requires_grad_(True)
    out = q(z)
    assert bool(q.initted)
    book = q.codebook[torch.cdist(centres, q.codebook).argmin(1)]
    assert torch.allclose(book, centres, atol=0.2)  # k-means found the clusters
    assert out.perplexity.item() == pytest.approx(4.0, rel=0.05)
    assert out.batch_usage.item() == 1.0
    out.z_q.sum().backward()  # straight-through: gradient 1 everywhere
    assert torch.allclose(z.grad, torch.ones_like(z))
    # EMA: shifting the data moves the codes toward the new means
    before = q.codebook.clone()
    for _ in range(10):
        q(z.detach() + 1.0)
    moved = (q.codebook - before).mean(0)
    assert torch.allclose(moved, torch.tensor([1.0, 1.0]), atol=0.05)
    # eval mode never updates the codebook
    q.eval()
    frozen = q.codebook.clone()
    q(z.detach() + 3.0)
    assert torch.equal(frozen, q.codebook)


def test_quantizer_dead_code_restart_and_masking() -> None:
    torch.manual_seed(0)
    q = VectorQuantizerEMA(QuantizerConfig(n_codes=16, dim=2, decay=0.5, kmeans_init=False, dead_ratio=0.1))
    with torch.no_grad():
        q.codebook.copy_(torch.randn(16, 2) * 0.1)
        q.codebook[8:] += 1000.0  # far away: never chosen
        q.embed_sum.copy_(q.codebook)
    z = torch.randn(4, 2, 8, 8)
    q(z)
    assert q.recent_usage() <= 0.5
    for _ in range(6):
        q(z)
    assert q.codebook.abs().max() < 50  # the far codes were restarted on data
    assert q.recent_usage() > 0.5
    # masked tokens never move the codebook
    q2 = VectorQuantizerEMA(QuantizerConfig(n_codes=4, dim=2, kmeans_init=False))
    before = q2.codebook.clone()
    out = q2(torch.full((1, 2, 2, 2), 100.0), torch.zeros(1, 2, 2, dtype=torch.bool))
    assert torch.equal(before, q2.codebook) and out.commit_loss.item() == 0.0


def test_quantizer_cosine_lookup() -> None:
    q = VectorQuantizerEMA(QuantizerConfig(n_codes=8, dim=4, distance="cosine", kmeans_iters=2))
    out = q(torch.randn(2, 4, 3, 5))
    assert torch.allclose(q.codebook.norm(dim=1), torch.ones(8), atol=1e-5)
    assert torch.allclose(out.z_q.norm(dim=1), torch.ones(2, 3, 5), atol=1e-5)


# ---------------------------------------------------------------- losses


def test_interchannel_loss_emphasises_lateralised_differences() -> None:
    x = torch.zeros(1, 19, 4, 10)
    cm = torch.ones(1, 19, dtype=torch.bool)
    fm = torch.ones(1, 10, dtype=torch.bool)
    left = torch.tensor([c[-1] in "1357" for c in CANONICAL_CHANNELS])
    right = torch.tensor([c[-1] in "2468" for c in CANONICAL_CHANNELS])
    diffuse = x + 0.1  # the same error on every channel
    lateral = x.clone()
    lateral[:, left] += 0.1 * 19 / (2 * left.sum())
    lateral[:, right] -= 0.1 * 19 / (2 * right.sum())  # plain L1 identical to diffuse
    focal = x.clone()
    focal[:, 7] += 0.1 * 19  # one electrode (T3): plain L1 identical too
    plain = [masked_l1(x, e, cm, fm).item() for e in (diffuse, lateral, focal)]
    assert plain == pytest.approx([plain[0]] * 3)
    w = 2.0
    ic = [interchannel_l1(x, e, cm, fm, w)[0].item() for e in (diffuse, lateral, focal)]
    assert ic[1] > 1.5 * ic[0] and ic[2] > 1.5 * ic[0]
    assert ic[1] / plain[1] > ic[0] / plain[0]
    # masked positions do not count
    cm2 = cm.clone()
    cm2[0, 7] = False
    assert interchannel_l1(x, focal, cm2, fm, w)[0].item() == pytest.approx(0.0, abs=1e-7)
    fm2 = fm.clone()
    fm2[0, 5:] = False
    junk = diffuse.clone()
    junk[..., 5:] = 100.0
    assert interchannel_l1(x, junk, cm, fm2, w)[0].item() == pytest.approx(ic[0], rel=1e-5)


# ---------------------------------------------------------------- model


def test_model_shapes_and_parameter_counts() -> None:
    ctx = build_context(micro_config())
    model = VQGAN(ctx)
    x = torch.rand(2, 19, 128, 1280) * 2 - 1
    fm = torch.ones(2, 1280, dtype=torch.bool)
    fm[1, 700:] = False
    x_rec, q = model(x, fm)
    assert x_rec.shape == x.shape
    assert q.codes.shape == (2, 8, 16)
    codes, tmask = model.tokenize(x, fm)
    assert tmask[0].all() and tmask[1, :, :9].all() and not tmask[1, :, 9:].any()  # 80 frames per column
    assert codes.max() < 32
    d = PatchDiscriminator(ctx)
    assert d(x).ndim == 4
    with pytest.raises(ValueError, match="1280"):
        model.encode(torch.zeros(1, 19, 128, 1000))
    for name, expected in (("tiny", (8, 64)), ("base", (16, 128))):
        m = VQGAN(build_context(load_preset(VQGANConfig, name)))
        assert m.ctx.grid == expected
        assert count_parameters(m) > 0


def test_hemisphere_layout_keeps_sides_apart_and_mirrors() -> None:
    """Each side is its own image on its own token rows; swapping the sides swaps the rows."""
    data = json.loads(json.dumps(MICRO))
    data["model"]["layout"] = "hemispheres"
    model = VQGAN(build_context(VQGANConfig.model_validate(data))).eval()
    sides = model.ctx.hemispheres
    names = [CANONICAL_CHANNELS[i] for i in sides.right[:sides.n_lateral]]
    assert model.ctx.grid == (16, 16) and model.ctx.image_channels == 11
    assert names == ["Fp2", "F8", "F4", "T4", "C4", "T6", "P4", "O2"]  # homologues of the left order
    x = torch.rand(2, 19, 128, 1280) * 2 - 1
    fm = torch.ones(2, 1280, dtype=torch.bool)
    codes, tmask = model.tokenize(x, fm)
    assert codes.shape == tmask.shape == (2, 16, 16)
    mirrored = x.clone()
    mirrored[:, list(sides.left[:8])], mirrored[:, list(sides.right[:8])] = x[:, list(sides.right[:8])], x[:, list(sides.left[:8])]
    swapped, _ = model.tokenize(mirrored, fm)
    assert torch.equal(swapped[:, :8], codes[:, 8:]) and torch.equal(swapped[:, 8:], codes[:, :8])
    # a change on the left only moves left rows
    louder = x.clone()
    louder[:, list(sides.left[:8])] += 0.8
    changed, _ = model.tokenize(louder, fm)
    assert torch.equal(changed[:, 8:], codes[:, 8:]) and not torch.equal(changed[:, :8], codes[:, :8])
    # the decoder writes each lateral channel from its side, the midline as the mean of both sides
    y = torch.arange(2 * 11, dtype=torch.float32).reshape(2, 11, 1, 1).expand(2, 11, 2, 3)
    merged = sides.merge(y, 19)
    fz = CANONICAL_CHANNELS.index("Fz")
    assert merged[0, CANONICAL_CHANNELS.index("O1"), 0, 0] == 7 and merged[0, CANONICAL_CHANNELS.index("O2"), 0, 0] == 18
    assert merged[0, fz, 0, 0] == (8 + 19) / 2
    assert model.decode_codes(codes).shape == x.shape
    with pytest.raises(ValueError, match="homologue"):
        build_context(VQGANConfig.model_validate(data), SignalContract(channels=("Fp1", "F3", "Fz", "F4", "C3"),
                                                                       min_channels=2))


# ---------------------------------------------------------------- checkpoints and training


def test_training_loss_decreases_and_checkpoint_round_trip(archive: Path, tmp_path: Path) -> None:
    from tokenizer.tokens import Tokenizer
    from tokenizer.vqgan.training import TRAINING_STATE, load_training_checkpoint, train_tokenizer

    torch.manual_seed(0)
    cfg = micro_config(max_steps=16, checkpoint_every=8, log_every=3)
    cfg = cfg.model_copy(update={"discriminator": cfg.discriminator.model_copy(update={"start_step": 13})})
    out = tmp_path / "ckpt"
    cache = tmp_path / "cache"
    train_tokenizer(archive, cfg, out, cache_dir=cache, accelerator="cpu", devices=1, enable_progress_bar=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["step"] == 16 and meta["kind"] == "vqgan" and meta["n_tokens"] == 128
    assert meta["training_data_digest"] and (out / TRAINING_STATE).is_file()
    assert not list(out.glob("*.ckpt"))
    import csv

    rows = list(csv.DictReader(open(tmp_path / "ckpt.logs" / "from_step_0" / "metrics.csv")))
    rec = [float(r["train/mean_l1"]) + 2 * float(r["train/residual_l1"]) for r in rows if r.get("train/mean_l1")]
    assert len(rec) >= 4
    assert np.mean(rec[-2:]) < 0.8 * np.mean(rec[:2])  # the reconstruction improves
    assert any(r.get("train/err_alpha_db") for r in rows) and any(r.get("train/d_loss") for r in rows)

    # save -> load gives identical tokens
    module = load_training_checkpoint(out)
    assert module.g_step == 16 and module._optimizer_state is not None
    rec_f = find_recordings(archive)[2]
    _, tok1 = Tokenizer(module.model).tokenize_file(rec_f, SpectrogramCache(cache))
    _, tok2 = Tokenizer.from_checkpoint(out).tokenize_file(rec_f, SpectrogramCache(cache))
    assert tok1.codes.dtype == np.int16 and tok1.codes.shape == (2, 8, 16)
    assert np.array_equal(tok1.codes, tok2.codes) and np.array_equal(tok1.token_mask, tok2.token_mask)
    rec = read_recording(rec_f)
    assert np.array_equal(Tokenizer.from_checkpoint(out).tokenize_recording(rec).codes, tok1.codes)
    assert not tok1.token_mask[1, :, -(-(1500 - 1280) // 80):].any()

    # resume continues from the saved step, refuses to clobber without --resume
    with pytest.raises(FileExistsError):
        train_tokenizer(archive, cfg, out, cache_dir=cache, accelerator="cpu", devices=1, enable_progress_bar=False)
    train_tokenizer(archive, cfg, out, cache_dir=cache, resume=True, max_steps=18, accelerator="cpu", devices=1,
                    enable_progress_bar=False)
    assert json.loads((out / "meta.json").read_text())["step"] == 18


def test_training_is_reproducible_from_its_seed(archive: Path, tmp_path: Path) -> None:
    """Two fresh runs of the same config give the same weights, whatever the process's RNG
    state before (the initial weights come from the config's seed too)."""
    from safetensors.torch import load_file

    from tokenizer.vqgan.training import train_tokenizer

    cfg = micro_config(max_steps=2, checkpoint_every=2, log_every=1)
    weights = []
    for i, seed in enumerate((1, 2)):
        torch.manual_seed(seed)  # another global RNG state each time
        out = tmp_path / f"run{i}"
        train_tokenizer(archive, cfg, out, cache_dir=tmp_path / "cache", accelerator="cpu", devices=1,
                        enable_progress_bar=False)
        weights.append(load_file(str(out / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k


def test_compute_spectrogram_matches_cache(archive: Path, tmp_path: Path) -> None:
    f = find_recordings(archive)[1]
    rec = read_recording(f)
    direct = compute_spectrogram(rec, SignalContract())
    cached, _ = SpectrogramCache(tmp_path).load_or_compute(f)
    assert np.array_equal(direct.values, cached.values)
    assert direct.source_sha256 == cached.source_sha256 == rec.source_sha256


# ---------------------------------------------------------------- clinical content


def test_patch_stem_and_head_equal_their_convolutions() -> None:
    from tokenizer.vqgan.model import PatchEmbed, PatchUnembed

    torch.manual_seed(0)
    stem, conv = PatchEmbed(19, 8, (4, 10)), torch.nn.Conv2d(19, 8, (4, 10), stride=(4, 10))
    conv.load_state_dict(stem.state_dict())  # same parameters, same keys: checkpoints load either way
    x = torch.randn(2, 19, 16, 40)
    assert torch.allclose(stem(x), conv(x), atol=1e-5)
    assert torch.allclose(stem(x.contiguous(memory_format=torch.channels_last)), conv(x), atol=1e-5)
    head, convt = PatchUnembed(8, 19, (4, 10)), torch.nn.ConvTranspose2d(8, 19, (4, 10), stride=(4, 10))
    convt.load_state_dict(head.state_dict())
    z = torch.randn(2, 8, 4, 4)
    assert torch.allclose(head(z), convt(z), atol=1e-5)


def test_pooled_losses_see_a_shifted_peak_through_estimator_noise() -> None:
    from tokenizer.vqgan.losses import pool_valid, pooled_losses

    gen = torch.Generator().manual_seed(0)
    cm = torch.ones(1, 19, dtype=torch.bool)
    fm = torch.ones(1, 40, dtype=torch.bool)
    f = torch.arange(32.0)[None, None, :, None]
    clean = (0.3 * torch.exp(-0.5 * ((f - 10) / 1.5) ** 2)).expand(1, 19, 32, 40)
    shifted = (0.3 * torch.exp(-0.5 * ((f - 14) / 1.5) ** 2)).expand(1, 19, 32, 40)
    noisy = clean + 0.06 * torch.randn(1, 19, 32, 40, generator=gen)  # ~2.5 dB per bin-frame at scale 40
    kw = {"pool": (2, 20), "residual_weight": 2.0}
    same = pooled_losses(noisy, clean, cm, fm, **kw)
    moved = pooled_losses(noisy, shifted, cm, fm, **kw)
    # against the noisy target, the clean map loses far less than the shifted one (the noise averages out)
    plain = interchannel_l1(noisy, shifted, cm, fm, 2.0)[0] / interchannel_l1(noisy, clean, cm, fm, 2.0)[0]
    assert moved["pooled_l1"] / same["pooled_l1"] > 2 * plain
    assert moved["freq_grad_l1"] / same["freq_grad_l1"] > 2 * plain
    # padded frames do not enter the pooled maps
    fm2 = fm.clone()
    fm2[0, 30:] = False
    junk = clean.clone()
    junk[..., 30:] = 5.0
    px, pxh, pfm = pool_valid(clean, junk, fm2, (2, 20))
    assert pfm.tolist() == [[True, True]]
    assert torch.allclose(px, pxh)
    with pytest.raises(ValueError, match="pool"):
        VQGANConfig.model_validate({**MICRO, "loss": {"pool": [0, 10]}})


def _spectrum(peak_hz: float | None, n_frames: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(19, 128, n_frames) dB: 1/f background, a posterior peak at ``peak_hz``, ±1 dB noise."""
    rng = np.random.default_rng(seed)
    freqs = np.arange(128) / 4.0
    base = 20 - 10 * np.log10(np.maximum(freqs, 0.5))
    spec = np.repeat(np.repeat(base[None, :, None], 19, 0), n_frames, 2)
    if peak_hz is not None:
        post = np.array([c in ("O1", "O2", "P3", "P4") for c in CANONICAL_CHANNELS])
        spec[post] += (12 * np.exp(-0.5 * ((freqs - peak_hz) / 0.5) ** 2))[None, :, None]
    return spec + rng.normal(0, 1, spec.shape), freqs


def test_pdr_peak_found_and_a_shifted_decoding_fails() -> None:
    from tokenizer.vqgan.evaluate import awake_epochs, pdr_peaks

    orig, freqs = _spectrum(10.0)
    good, _ = _spectrum(10.0, seed=1)
    bad, _ = _spectrum(11.5, seed=2)
    flat, _ = _spectrum(None, seed=3)
    fm = np.ones(120, bool)
    cm = np.ones(19, bool)
    epochs = awake_epochs([(0.0, 120.0)], fm, epoch_s=50.0, margin_s=10.0)
    assert [np.flatnonzero(e)[[0, -1]].tolist() for e in epochs] == [[10, 59], [60, 109]]
    for decoded, ok in ((good, True), (bad, False), (flat, False)):
        peaks = pdr_peaks(orig, decoded, freqs, cm, epochs)
        assert peaks.shape == (2, 2)
        assert np.allclose(peaks[:, 0], 10.0)
        assert bool(np.all(np.abs(peaks[:, 0] - peaks[:, 1]) <= 0.5)) is ok
    # an absent O1/O2 pair gives no epoch; invalid frames and short spans give none either
    cm2 = cm.copy()
    cm2[[CANONICAL_CHANNELS.index("O1"), CANONICAL_CHANNELS.index("O2")]] = False
    assert pdr_peaks(orig, good, freqs, cm2, epochs).shape == (0, 2)
    fm2 = fm.copy()
    fm2[70] = False
    assert len(awake_epochs([(0.0, 120.0)], fm2, epoch_s=50.0)) == 1
    assert awake_epochs([(0.0, 60.0)], fm, epoch_s=50.0) == []


def test_band_power_errors_per_channel_and_epoch() -> None:
    from tokenizer.vqgan.evaluate import band_power_errors, epoch_band_power

    orig, freqs = _spectrum(10.0, n_frames=35)
    fm = np.ones(35, bool)
    cm = np.ones(19, bool)
    assert all(np.allclose(v, 0) for v in band_power_errors(orig, orig, freqs, cm, fm).values())
    dec = orig.copy()
    dec[:, (freqs >= 8) & (freqs < 13)] += 3.0  # alpha 3 dB too strong everywhere
    dec[4] += 20.0  # Fz wrong in every band ...
    cm[4] = False  # ... but absent
    fm[12] = False  # the second 10-s epoch is not fully recorded
    err = band_power_errors(orig, dec, freqs, cm, fm)
    assert {b: v.size for b, v in err.items()} == {b: 18 * 2 for b in ("delta", "theta", "alpha", "beta")}
    assert np.allclose(err["alpha"], 3.0) and np.allclose(err["theta"], 0) and np.allclose(err["beta"], 0)
    # band power is the mean of linear power: 10 log10 of mean(10^(dB/10))
    power, full = epoch_band_power(orig, freqs, fm, epoch_frames=10)
    sel = (freqs >= 0.5) & (freqs < 4.0)
    expected = 10 * np.log10(np.mean(10 ** (orig[0][sel][:, :10] / 10)))
    assert power["delta"][0, 0] == pytest.approx(expected) and full.tolist() == [True, False, True]
    with pytest.raises(ValueError, match="shape"):
        band_power_errors(orig, dec[:, :, :20], freqs, cm, fm)


def test_hemispheric_differences_left_minus_right() -> None:
    from tokenizer.vqgan.evaluate import HOMOLOGOUS_PAIRS, hemispheric_differences

    spec, freqs = _spectrum(None, n_frames=20)
    left = np.array([c[-1] in "1357" for c in CANONICAL_CHANNELS])
    spec[np.ix_(left, (freqs >= 0.5) & (freqs < 4.0))] += 6.0  # left-sided delta
    cm = np.ones(19, bool)
    cm[CANONICAL_CHANNELS.index("T4")] = False
    d = hemispheric_differences(spec, freqs, cm, np.ones(20, bool))
    t = [a for a, _ in HOMOLOGOUS_PAIRS].index("T3")
    assert np.isnan(d["delta"][t]) and np.isnan(d["alpha"][t])
    others = np.delete(np.arange(len(HOMOLOGOUS_PAIRS)), t)
    assert np.allclose(d["delta"][others], 6.0, atol=0.6)
    assert np.allclose(d["alpha"][others], 0.0, atol=0.6)


def test_training_on_time_crops_with_the_clinical_terms_then_whole_windows(archive: Path, tmp_path: Path) -> None:
    from tokenizer.tokens import Tokenizer
    from tokenizer.vqgan.training import train_tokenizer

    data = json.loads(json.dumps(MICRO))
    data["data"].update(crop_frames=160, keep_sessions=2)  # two token columns of 80 frames; 2 sessions in memory
    data["loss"] = {"pooled_weight": 1.0, "freq_grad_weight": 1.0, "pool": [2, 20]}
    data["optim"].update(schedule="cosine", warmup_steps=2)
    data["train"].update(max_steps=6, log_every=1)
    cfg = VQGANConfig.model_validate(data)
    out = tmp_path / "ckpt"
    train_tokenizer(archive, cfg, out, cache_dir=tmp_path / "cache", accelerator="cpu", devices=1,
                    enable_progress_bar=False)
    import csv

    rows = [r for r in csv.DictReader(open(tmp_path / "ckpt.logs" / "from_step_0" / "metrics.csv")) if r.get("train/lr")]
    lrs = [float(r["train/lr"]) for r in rows]
    assert lrs[1] == pytest.approx(3e-3) and lrs[-1] < 0.5 * max(lrs)  # warm-up, then the cosine decay
    assert all(float(r["train/pooled_l1"]) > 0 and float(r["train/freq_grad_l1"]) > 0 for r in rows)
    # the weights tokenize whole windows
    _, tok = Tokenizer.from_checkpoint(out).tokenize_file(find_recordings(archive)[2],
                                                          SpectrogramCache(tmp_path / "cache"))
    assert tok.codes.shape == (2, 8, 16)
    for bad in (100, 2000):
        with pytest.raises(ValueError, match="crop_frames"):
            build_context(VQGANConfig.model_validate({**data, "data": {"crop_frames": bad}}))
