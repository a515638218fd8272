"""Synthetic hospital benchmark: generation speed, and the planted truth measured back.

Usage::

    python bench/synth.py [--patients 200] [--workers 2] [--stats]

1. Speed: ``synthesize_hospital`` with the default (realistic) session durations; the
   target is 200 patients (~400 sessions of ~25 min) in ≤ 3 minutes on 2 cores.
2. ``--stats``: read every written file back with ``tokenizer.read_recording`` and
   compare simple statistics between groups defined from the EHR side of the truth
   (active drugs and conditions), as an independent check that the truth is in the
   signals: relative 13–30 Hz power (benzodiazepines), occipital 4–13 Hz peak
   (encephalopathy), signed left/right delta asymmetry (focal slowing), and the same
   statistics for negative-control conditions among sessions without planted findings.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def stats(hosp: Path) -> None:
    from scipy import signal

    from clef.synthetic.hospital import load_truth
    from tokenizer import read_recording

    truth = load_truth(hosp)
    left, right = [0, 2, 3, 7, 8, 12, 13, 17], [1, 6, 5, 11, 10, 16, 15, 18]
    rows = {}
    for r in truth.iter_rows(named=True):
        rec = read_recording(hosp / r["path"])
        f, p = signal.welch(rec.data, fs=200, nperseg=800, axis=-1)
        m = rec.channel_mask
        beta = p[m][:, (f >= 13) & (f < 30)].sum() / p[m][:, (f >= 1) & (f < 30)].sum()
        band = (f >= 4) & (f <= 13)
        peak = f[band][np.argmax(p[[17, 18]][:, band].mean(0))]
        d = (f >= 1) & (f < 4)
        lr = np.log(p[left][:, d].sum() / p[right][:, d].sum())
        rows[r["session_id"]] = (r, beta, peak, lr)

    def group(pred):
        return [v for v in rows.values() if pred(v[0])]

    def show(name, a, b, k, fmt="{:.3f}"):
        va, vb = [x[k] for x in a], [x[k] for x in b]
        print(f"{name:58s} n={len(va):3d} vs {len(vb):3d}   median {fmt.format(np.median(va))} vs {fmt.format(np.median(vb))}")

    benzo = lambda r: any(c.startswith(("N05BA", "N05CD", "N03AE")) for c in r["atc_codes"])  # noqa: E731
    enc = lambda r: any(c.startswith(("G93.4", "F05")) for c in r["condition_codes"])  # noqa: E731
    neg = lambda r: any(c.startswith(("E03", "I10", "E11", "E78")) for c in r["condition_codes"])  # noqa: E731
    print("== truth in the signals (files read back through tokenizer.read_recording)")
    show("relative 13-30 Hz power: benzodiazepine active vs not", group(benzo), group(lambda r: not benzo(r)), 1)
    for setting in ("routine", "emu", "icu"):
        a = group(lambda r: benzo(r) and r["setting"] == setting)
        b = group(lambda r: not benzo(r) and r["setting"] == setting)
        if a and b:
            show(f"  same, {setting} sessions only", a, b, 1)
    show("O1/O2 4-13 Hz peak (Hz): encephalopathy vs adult no-finding", group(enc),
         group(lambda r: not r["finding_names"] and 18 <= r["age_years"] < 70), 2, "{:.2f}")
    lat = [(v, f["side"]) for v in rows.values() for f in v[0]["findings"] if f["name"] == "focal_slowing"]
    signed = [v[3] * (1 if s == "L" else -1) for v, s in lat]
    clean = group(lambda r: not r["finding_names"])
    print(f"{'log L/R delta power, signed to the lesion side: focal slowing':58s} n={len(signed):3d}        "
          f"median {np.median(signed):.3f}; no-finding sessions {np.median([v[3] for v in clean]):+.3f}")
    cn = group(lambda r: not r["finding_names"] and neg(r))
    cr = group(lambda r: not r["finding_names"] and not neg(r))
    show("negative controls (E03/I10/E11/E78), no findings: rel. beta", cn, cr, 1)
    show("negative controls (E03/I10/E11/E78), no findings: log L/R delta", cn, cr, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stats", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    from clef.synthetic.hospital import synthesize_hospital

    hosp = OUT / f"hospital_{args.patients}"
    shutil.rmtree(hosp, ignore_errors=True)
    t0 = time.perf_counter()
    s = synthesize_hospital(hosp, args.patients, seed=args.seed, workers=args.workers)
    dt = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in hosp.rglob("*") if p.is_file())
    print(f"== speed: {s.n_patients} patients, {s.n_sessions} sessions, {s.hours_of_eeg:.1f} h of EEG "
          f"(mean {60 * s.hours_of_eeg / s.n_sessions:.1f} min/session), {size / 2**30:.2f} GiB")
    print(f"synthesize_hospital with {args.workers} workers: {dt:.1f} s "
          f"({dt / s.n_sessions * 1000:.0f} ms per session, {s.hours_of_eeg * 3600 / dt:.0f}× real time)")
    if args.stats:
        stats(hosp)


if __name__ == "__main__":
    main()
