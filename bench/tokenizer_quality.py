"""Does the tokenizer keep what a neurologist reads? Decoded vs original spectrograms of held-out patients.

Usage::

    python bench/tokenizer_quality.py [--config clinical] [--steps 0 (= the config's)]
        [--patients 160] [--seed 16] [--train-fraction 0.5] [--threads 1]

Data
    One synthetic hospital (``--patients``, ``--seed``; cached in
    ``bench/out/tokenizer_quality/hospital_s<seed>_p<patients>``) split by patient: a
    patient trains the tokenizer when ``sha256("clef-tokenizer-quality|" + patient_id)``
    read as a fraction falls below ``--train-fraction``; every session of every other
    patient is held out, and all figures below are measured on those sessions only (the
    tokenizer never saw them, nor any session of their patients).
Training
    ``train_tokenizer`` on the training patients' files (symlinked), checkpoint in
    ``bench/out/tokenizer_quality/vqgan_<config>_<steps>_s<seed>_p<patients>``. A run that
    was interrupted resumes from its last checkpoint; evaluations are cached per
    checkpoint step in ``eval_step<N>.npz`` next to it.
Targets (issue 16, item 3), each printed with PASS/FAIL
    1. PDR: occipital (O1/O2) 4-13 Hz peak of the decoded spectrogram within 0.5 Hz of
       the original's in >= 90 % of awake epochs of adults (>= 18 y) whose truth has a
       PDR. An epoch is 60 s inside an awake span of the truth's vigilance states, 10 s
       from its ends (:func:`tokenizer.vqgan.evaluate.awake_epochs`).
    2. Band power: mean |decoded - original| band power (dB) per present channel per
       10-s epoch (one EEG page) <= 1.5 dB in every band. The raw per-bin, per-1-s-frame
       error (which includes the estimator's ~2.5 dB noise) is printed next to it.
    3. Hemispheric differences: Pearson correlation >= 0.9, per band, between original
       and decoded left-minus-right band power (dB, whole session) over held-out
       sessions x the eight homologous pairs.
    4. Band-power probe: the 129 session band-power features of the spectral baseline
       (``benchmark_tasks.baselines.bandpower.spectrum_features``) computed from the
       original and from the decoded spectrogram; a patient-grouped 5-fold logistic
       probe (``benchmark_tasks.probes.cross_validated_auroc``) per planted finding with
       >= 8 positive held-out sessions; the decoded probe's mean AUROC over those
       findings is at most 0.02 below the original's (each finding printed).
Also printed: codebook usage and perplexity, tokens per 1280-s window (what stage 1
pays for), training wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "tokenizer_quality"
SPLIT_SALT = "clef-tokenizer-quality"
MIN_POSITIVES = 8


def is_training_patient(patient_id: str, fraction: float) -> bool:
    """The documented patient split: salted SHA-256 of the patient id, read as a fraction in [0, 1)."""
    h = hashlib.sha256(f"{SPLIT_SALT}|{patient_id}".encode()).hexdigest()
    return int(h[:15], 16) / 16 ** 15 < fraction


def training_archive(hosp: Path, truth, fraction: float) -> Path:
    """A folder of symlinks to the training patients' EDF files."""
    arch = OUT / f"train_{hosp.name}_f{fraction:g}"
    for r in truth.iter_rows(named=True):
        if is_training_patient(r["patient_id"], fraction):
            link = arch / r["path"]
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to((hosp / r["path"]).resolve())
    return arch


def evaluate_session(model, spec, row: dict, freqs: np.ndarray) -> dict:
    """Every per-session quantity the four targets need (decoded vs original)."""
    from benchmark_tasks.baselines.bandpower import spectrum_features
    from tokenizer.contract import CANONICAL_CHANNELS
    from tokenizer.multitaper import CANONICAL_BANDS
    from tokenizer.vqgan.evaluate import (
        awake_epochs,
        band_power_errors,
        evaluate_reconstruction,
        hemispheric_differences,
        pdr_peaks,
    )

    rep, (recon,) = evaluate_reconstruction(model, [spec])
    orig = spec.values.astype(np.float32)
    cm, fm = spec.channel_mask, spec.frame_mask
    errs = band_power_errors(orig, recon, freqs, cm, fm)
    out: dict = {"raw_err": np.array([rep.band_error_db[b] for b in CANONICAL_BANDS]),
                 "raw_weight": float(cm.sum() * fm.sum()),
                 "clin_sum": np.array([errs[b].sum() for b in CANONICAL_BANDS]),
                 "clin_n": np.array([errs[b].size for b in CANONICAL_BANDS]),
                 "codes": rep.code_counts}
    peaks = np.zeros((0, 2))
    if row["age_years"] >= 18 and row["pdr_hz"] is not None:
        spans = [(s["start_s"], s["stop_s"]) for s in row["states"] if s["state"] == "awake"]
        peaks = pdr_peaks(orig, recon, freqs, cm, awake_epochs(spans, fm))
    out["peaks"] = peaks
    ho = hemispheric_differences(orig, freqs, cm, fm)
    hd = hemispheric_differences(recon, freqs, cm, fm)
    out["hemi"] = np.stack([np.stack([ho[b], hd[b]]) for b in CANONICAL_BANDS])  # (bands, 2, pairs)
    lin = lambda x: np.power(10.0, x[:, :, fm].astype(np.float64) / 10).mean(2)  # noqa: E731
    out["feat"] = np.stack([spectrum_features(lin(orig), freqs, CANONICAL_CHANNELS, cm),
                            spectrum_features(lin(recon), freqs, CANONICAL_CHANNELS, cm)])
    return out


def impute(x: np.ndarray) -> np.ndarray:
    """Column means for NaN (absent electrodes); all-NaN columns become 0."""
    mean = np.nan_to_num(np.nanmean(np.where(np.isfinite(x), x, np.nan), axis=0))
    return np.where(np.isfinite(x), x, mean)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="clinical", help="shipped config name or YAML path")
    ap.add_argument("--steps", type=int, default=0, help="training steps (0: the config's train.max_steps)")
    ap.add_argument("--patients", type=int, default=160)
    ap.add_argument("--seed", type=int, default=16, help="hospital seed")
    ap.add_argument("--train-fraction", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-only", action="store_true", help="train (or resume), do not evaluate")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="evaluate this trained checkpoint instead of training one (it must not have seen the "
                         "held-out patients: train it on the same split)")
    args = ap.parse_args()
    if not 0 < args.train_fraction < 1:
        ap.error("--train-fraction must be in (0, 1)")
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    os.environ.setdefault("CLEF_HOME", str(OUT / "home"))
    import torch

    from benchmark_tasks.probes import cross_validated_auroc
    from clef.synthetic.hospital import load_truth, synthesize_hospital
    from clef.synthetic.spec import FINDINGS
    from tokenizer import SignalContract
    from tokenizer.spectrogram_cache import SpectrogramCache
    from tokenizer.multitaper import CANONICAL_BANDS
    from tokenizer.presets import load_preset
    from tokenizer.vqgan.config import VQGANConfig
    from tokenizer.vqgan.model import VQGAN
    from tokenizer.vqgan.training import train_tokenizer

    torch.set_num_threads(args.threads)
    hosp = OUT / f"hospital_s{args.seed}_p{args.patients}"
    if not (hosp / "truth.parquet").exists():
        synthesize_hospital(hosp, args.patients, seed=args.seed, workers=2, overwrite=True)
    truth = load_truth(hosp)
    cfg = load_preset(VQGANConfig, args.config)
    steps = args.steps or cfg.train.max_steps
    ckpt = args.checkpoint or OUT / f"vqgan_{cfg.name}_{steps}_s{args.seed}_p{args.patients}"
    arch = training_archive(hosp, truth, args.train_fraction)
    contract = SignalContract()
    timing = ckpt.with_name(ckpt.name + ".train_seconds.json")
    done = json.loads(timing.read_text()) if timing.exists() else {}
    meta = json.loads((ckpt / "meta.json").read_text()) if (ckpt / "meta.json").exists() else {}
    if args.checkpoint is None and meta.get("step", 0) < steps:
        t0, c0 = time.perf_counter(), time.process_time()
        train_tokenizer(arch, cfg, ckpt, contract=contract, cache_dir=OUT / "cache", max_steps=steps,
                        resume=(ckpt / "meta.json").exists(), enable_progress_bar=False)
        done[str(steps)] = done.get(str(steps), 0.0) + time.perf_counter() - t0  # resumed runs add up
        done[f"{steps}_cpu"] = done.get(f"{steps}_cpu", 0.0) + time.process_time() - c0
        timing.write_text(json.dumps(done))
    if args.train_only:
        return
    model = VQGAN.from_checkpoint(str(ckpt))
    cfg = model.config
    step = json.loads((ckpt / "meta.json").read_text())["step"]
    freqs = np.asarray(model.ctx.freqs)
    held = truth.filter([not is_training_patient(p, args.train_fraction) for p in truth["patient_id"]])
    n_train_pat = truth["patient_id"].n_unique() - held["patient_id"].n_unique()
    cache_file = ckpt.with_name(f"{ckpt.name}.eval_step{step}.npz")
    t0 = time.perf_counter()
    if cache_file.exists():
        z = dict(np.load(cache_file, allow_pickle=False))
        per = [{k[len(f"s{i}_"):]: v for k, v in z.items() if k.startswith(f"s{i}_")} for i in range(held.height)]
    else:
        cache = SpectrogramCache(OUT / "cache", contract)
        per = []
        for r in held.iter_rows(named=True):
            spec, _ = cache.load_or_compute(hosp / r["path"])
            per.append(evaluate_session(model, spec, r, freqs))
        np.savez(cache_file, **{f"s{i}_{k}": v for i, d in enumerate(per) for k, v in d.items()})
    t_eval = time.perf_counter() - t0

    names = list(CANONICAL_BANDS)
    w = np.array([d["raw_weight"] for d in per])
    raw = (np.stack([d["raw_err"] for d in per]) * w[:, None]).sum(0) / w.sum()
    clin = np.stack([d["clin_sum"] for d in per]).sum(0) / np.stack([d["clin_n"] for d in per]).sum(0)
    counts = np.stack([d["codes"] for d in per]).sum(0)
    p = counts / max(1, counts.sum())
    ppl = float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum()))
    peaks = np.concatenate([d["peaks"] for d in per])
    pdr_rows = [r for r, d in zip(held.iter_rows(named=True), per) if len(d["peaks"])]
    truth_pdr = np.concatenate([np.full(len(d["peaks"]), r["pdr_hz"]) for r, d in
                                zip(held.iter_rows(named=True), per) if len(d["peaks"])])
    hemi = np.stack([d["hemi"] for d in per])  # (sessions, bands, 2, pairs)
    spent = json.loads(timing.read_text()) if timing.exists() else {}
    secs, cpu = spent.get(str(steps), float("nan")), spent.get(f"{steps}_cpu", float("nan"))

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print(f"== tokenizer '{cfg.name}' ({ckpt.name}), step {step}: {model.ctx.grid[0]}x{model.ctx.grid[1]} = "
          f"{model.ctx.n_tokens} tokens per 1280 s window, codebook {cfg.quantizer.n_codes}x{cfg.quantizer.dim}; "
          f"trained in {secs:.0f} s wall, {cpu:.0f} s CPU at {args.threads} thread(s) (this process's share "
          f"of the training; a resumed run adds its parts)")
    print(f"hospital seed {args.seed}, {args.patients} patients: trained on {n_train_pat} patients "
          f"({truth.height - held.height} sessions); evaluated on {held['patient_id'].n_unique()} held-out patients "
          f"({held.height} sessions, {held['duration_s'].sum() / 3600:.1f} h) in {t_eval:.0f} s")
    print(f"codebook usage {100 * (counts > 0).mean():.1f}% of {len(counts)} codes, perplexity {ppl:.1f}")
    hit = np.abs(peaks[:, 0] - peaks[:, 1]) <= 0.5
    print(f"[{verdict(hit.mean() >= 0.9)}] 1. PDR peak: decoded within 0.5 Hz of original in {100 * hit.mean():.1f}% of "
          f"{len(peaks)} awake 60-s epochs ({len(pdr_rows)} adult sessions with a PDR); median |diff| "
          f"{np.median(np.abs(peaks[:, 0] - peaks[:, 1])):.2f} Hz; original within 0.5 Hz of the true PDR in "
          f"{100 * np.mean(np.abs(peaks[:, 0] - truth_pdr) <= 0.5):.1f}%, decoded in "
          f"{100 * np.mean(np.abs(peaks[:, 1] - truth_pdr) <= 0.5):.1f}%")
    print(f"[{verdict(bool((clin <= 1.5).all()))}] 2. band power per channel per 10-s epoch, mean |error| dB: "
          + ", ".join(f"{b} {v:.2f}" for b, v in zip(names, clin))
          + "  (raw per bin per 1-s frame: " + ", ".join(f"{b} {v:.2f}" for b, v in zip(names, raw)) + ")")
    cors = []
    for k, b in enumerate(names):
        o, d = hemi[:, k, 0].ravel(), hemi[:, k, 1].ravel()
        ok = np.isfinite(o) & np.isfinite(d)
        cors.append(float(np.corrcoef(o[ok], d[ok])[0, 1]))
    sd = [float(np.nanstd(hemi[:, k, 0])) for k in range(len(names))]
    print(f"[{verdict(min(cors) >= 0.9)}] 3. left-right band power (session x pair) correlation original vs decoded: "
          + ", ".join(f"{b} {c:.3f}" for b, c in zip(names, cors))
          + "  (sd of the original differences: " + ", ".join(f"{b} {s:.2f} dB" for b, s in zip(names, sd)) + ")")
    feats = np.stack([d["feat"] for d in per])  # (sessions, 2, 129)
    xo, xd = impute(feats[:, 0]), impute(feats[:, 1])
    groups = held["patient_id"].to_numpy()
    rows = []
    for f in FINDINGS:
        y = np.array([f in r for r in held["finding_names"]])
        if y.sum() < MIN_POSITIVES or (~y).sum() < MIN_POSITIVES:
            continue
        rows.append((f, int(y.sum()), cross_validated_auroc(xo, y, groups), cross_validated_auroc(xd, y, groups)))
    ao, ad = np.mean([r[2] for r in rows]), np.mean([r[3] for r in rows])
    print(f"[{verdict(ao - ad <= 0.02)}] 4. band-power probe, mean AUROC over {len(rows)} planted findings: original "
          f"{ao:.3f}, decoded {ad:.3f} (loss {ao - ad:+.3f})")
    for f, n, a, b in rows:
        print(f"      {f:20s} n+={n:3d}  original {a:.3f}  decoded {b:.3f}  ({b - a:+.3f})")


if __name__ == "__main__":
    main()
