"""Do explanations point where the synthetic hospital planted the finding? (issue 19, "Explanations")

On a synthetic hospital with its hidden truth, for the positive sessions of each planted
finding, the score of a probe for that finding is explained by occlusion
(:func:`clef.explain.explain`, regions and bands and minutes; the per-channel scalp map
is not needed here) and checked against the truth:

* lateralised findings (focal slowing, asymmetry, focal IEDs, LPDs): the attributed
  hemisphere (the one whose occlusion drops the score more) is the true side;
* episodic findings (seizures, burst suppression): pointing game: the most attributed
  minute overlaps a true event (events re-simulated from the hospital's seed: the truth
  table keeps counts, not onsets; the re-simulation is checked against those counts);
* excess beta: the beta band carries the largest attribution.

Each hit rate has a bootstrap 95 % CI over sessions, next to a random-attribution
baseline (the same protocol on random arrays of the same shapes: 0.5 for a side, the
fraction of event minutes for the pointing game, 0.25 for the band).

The probe: the benchmark's saved probe of the task (``RESULTS/probes/eeg_<finding>.json``,
fitted on the checkpoint's embeddings); for a finding without a task (seizures, burst
suppression) a logistic probe fitted here on the cached embeddings of every session,
labels from the truth (so the explained positives are in its training set: it says where
the probe looks, not how well it generalises).

Hemispheres are taken away by ``--hemisphere-baseline`` (``mirror``, the default of
:func:`clef.explain.explain`: a side's electrodes replaced by their homologues; ``absent``:
zero input through the channel mask); ``--compare-hemisphere-baselines`` also explains
the lateralised sessions with the other one (regions only are kept from that second
pass), so both are scored on the same sessions. ``--skip N`` leaves out the first ``N``
positives of each finding (the reported ones): a set to look at before choosing anything.

A finding the hospital does not hold (the legacy study's has no LPDs: stroke is rare and
LPDs follow it in a fifth of acute strokes) can be planted here: ``--plant lpd:N`` writes
``N`` sessions with the finding (sides alternating, severity drawn as the catalogue
draws it) and ``N`` without, ``--plant-minutes`` long, in the ICU setting
(:func:`clef.synthetic.eeg.simulate_eeg`, EDF files under ``--out``), embeds all of them
with the checkpoint, fits a logistic probe on those embeddings (the explained positives
are in its training set, as for seizures) and explains the positives with the others.

Sanity reference (``--bandpower``): the same occlusions and checks on the benchmark's
``input_bandpower`` probe (band power of the tokenizer's input spectrogram, a model that
does carry lateralised and spectral signal), to tell "the occlusion cannot find the
side" from "the model does not carry it".

Run (1 thread, niced; a bounded number of positives per finding)::

    nice -n 10 python bench/explain_validity.py --study bench/out/study_200_legacy --max-positives 40 \\
        --threads 1 --bandpower --out bench/out/explain_validity
    nice -n 10 python bench/explain_validity.py --study bench/out/study_200_clinical --max-positives 15 \
        --threads 1 --bandpower --compare-hemisphere-baselines --out bench/out/explain_validity_clinical
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

LATERAL = ("asymmetry", "focal_slowing", "ied_focal", "lpd")
EPISODIC = {"seizure": "seizure", "burst_suppression": "burst", "intermittent_slowing": "intermittent_slowing"}
BETA = ("excess_beta",)


def bootstrap_ci(hits: np.ndarray, n_boot: int, seed: int = 0) -> tuple[float, float]:
    """Percentile 95 % CI of the mean of 0/1 hits, resampling sessions."""
    if hits.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = hits[rng.integers(0, hits.size, (n_boot, hits.size))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def events_of(hospital: Path, session_ids: list[str]) -> dict[str, list[tuple[float, float, str]]]:
    """Re-simulate sessions (seeded) for their events; checked against the truth's counts."""
    from clef.synthetic.eeg import simulate_eeg
    from clef.synthetic.hospital import HospitalConfig, load_truth
    from clef.synthetic.population import generate_population

    meta = json.loads((hospital / "hospital.json").read_text())
    cfg = HospitalConfig()
    pop = generate_population(int(meta["n_patients"]), int(meta["seed"]), cfg.population)
    by = {s.session_id: s for s in pop.sessions}
    truth = {r["session_id"]: r for r in load_truth(hospital).iter_rows(named=True)}
    out = {}
    for sid in session_ids:
        s = by[sid]
        _, summ = simulate_eeg(s.to_spec(), cfg.style_of(s.site).sfreq, cfg.eeg)
        if summ.count("seizure") != truth[sid]["n_seizures"]:
            raise RuntimeError(f"{sid}: re-simulation differs from the truth (seizures {summ.count('seizure')} vs "
                               f"{truth[sid]['n_seizures']}): the hospital was made by other code")
        out[sid] = [(e.onset_s, e.onset_s + e.duration_s, e.kind) for e in summ.events]
    return out


def plant_sessions(out: Path, finding: str, n: int, minutes: float, seed: int = 19) -> list[dict]:
    """``n`` ICU sessions with ``finding`` planted (sides alternating for a lateralised one) and
    ``n`` without, written as EDF under ``out``; rows ``{session_id, path, side, positive}``."""
    from clef.synthetic.eeg import LATERALISED_FINDINGS, simulate_eeg
    from clef.synthetic.spec import PlantedFinding, SessionSpec
    from tokenizer.contract import CANONICAL_CHANNELS
    from tokenizer.edf_writer import EDFSignal, write_edf

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(2 * n):
        positive = k < n
        side = ("L" if k % 2 == 0 else "R") if positive and finding in LATERALISED_FINDINGS else None
        sid = f"{finding.upper()}{k:03d}-{'P' if positive else 'C'}"
        severity = float(rng.uniform(0.3, 0.9))  # the catalogue's range for stroke's LPDs
        found = (PlantedFinding(finding, severity, side),) if positive else ()
        path = out / f"{sid}.edf"
        if not path.is_file():
            spec = SessionSpec(sid, minutes * 60.0, 65.0, "icu", findings=found, seed=seed * 1000 + k)
            x, summary = simulate_eeg(spec, 200.0)
            if positive and not summary.count(finding) and finding in ("lpd", "seizure"):
                raise RuntimeError(f"{sid}: the simulator planted no {finding} event")
            x = np.clip(x, -3200.0, 3200.0)
            write_edf(path, [EDFSignal(f"EEG {c}-REF", x[i], 200.0, physical_min=-3200.0, physical_max=3200.0)
                             for i, c in enumerate(CANONICAL_CHANNELS)])
        rows.append({"session_id": sid, "path": str(path), "side": side, "positive": positive})
    return rows


def embedding_probe(study: Path, model_name: str, model_id: str, finding: str, truth: pl.DataFrame):
    """A logistic probe for ``finding`` on the cached embeddings of every session (labels from the truth)."""
    from benchmark_tasks.probes import TaskProbe, fit_logistic_probe

    cache = study / "bench_cache" / "embeddings" / f"{model_name}-{model_id}.parquet"
    df = pl.read_parquet(cache).join(truth.select("session_id", "finding_names"), on="session_id")
    x = np.stack(df["vector"].to_list()).astype(np.float64)
    y = np.array([finding in (f or []) for f in df["finding_names"].to_list()], dtype=int)
    return TaskProbe(f"truth_{finding}", fit_logistic_probe(x, y), model_id)


def bandpower_probe(study: Path, finding: str, truth: pl.DataFrame):
    """The saved ``input_bandpower`` probe of the finding, else one fitted on the cached features."""
    from benchmark_tasks.probes import TaskProbe, fit_logistic_probe, load_probes

    saved = load_probes(study / "results" / "probes" / "input_bandpower")
    if f"eeg_{finding}" in saved:
        return saved[f"eeg_{finding}"]
    cache = next((study / "bench_cache").glob("tokenizer-rungs-v1-*.parquet"))
    df = pl.read_parquet(cache, columns=["session_id", "input"]).join(truth.select("session_id", "finding_names"),
                                                                      on="session_id")
    x = np.stack(df["input"].to_list()).astype(np.float64)
    y = np.array([finding in (f or []) for f in df["finding_names"].to_list()], dtype=int)
    return TaskProbe(f"truth_{finding}", fit_logistic_probe(x, y), None)


def bandpower_explain(spec, freqs: np.ndarray, channels: tuple[str, ...], probe, minute_s: float) -> dict:
    """The occlusions of :func:`clef.explain.explain` applied to the band-power model of the spectrogram:
    channels absent through the mask, a band inpainted (:func:`clef.explain.inpaint_band`), a minute's
    frames masked; the same attribution (baseline minus occluded)."""
    from benchmark_tasks.baselines.bandpower import spectrum_features
    from clef.explain import REGION_NAMES, channel_regions, inpaint_band
    from tokenizer.multitaper import CANONICAL_BANDS

    db = spec.values.astype(np.float32)
    fm, cm = spec.frame_mask.astype(bool), spec.channel_mask.astype(bool)

    def feats(values: np.ndarray, frames: np.ndarray, cmask: np.ndarray) -> np.ndarray:
        frames = frames if frames.any() else np.ones_like(frames)
        psd = np.power(10.0, values[:, :, frames].astype(np.float64) / 10.0).mean(2)
        return spectrum_features(psd, freqs, channels, cmask)

    rows = [feats(db, fm, cm)]
    regions = channel_regions(channels)
    for r in REGION_NAMES:
        c = cm.copy()
        c[list(regions[r])] = False
        rows.append(feats(db, fm, c))
    for rng in CANONICAL_BANDS.values():
        rows.append(feats(inpaint_band(db, freqs, rng), fm, cm))
    per = int(round(minute_s))
    n_steps = int(math.ceil(fm.size / per))
    steps = []
    for k in range(n_steps):
        f = fm.copy()
        f[k * per:(k + 1) * per] = False
        if fm[k * per:(k + 1) * per].any():
            steps.append(k)
            rows.append(feats(db, f, cm))
    s = np.asarray(probe(np.stack(rows)), dtype=np.float64)
    drop = s[0] - s
    n_r, n_b = len(REGION_NAMES), len(CANONICAL_BANDS)
    t = np.full(n_steps, np.nan)
    t[steps] = drop[1 + n_r + n_b:]
    return {"region": drop[1:1 + n_r], "band": drop[1 + n_r:1 + n_r + n_b], "time": t}



def explain_row(path, emb, probe, finding: str, session: dict, args: argparse.Namespace, events: list) -> tuple:
    """Explain one session's probe score; its spectrogram, minute length and the row written to rows.jsonl.

    With ``--compare-hemisphere-baselines`` a lateral finding's regions are explained again
    with the other hemisphere baseline (one band and first-order minutes keep that pass short).
    """
    from clef.explain import explain, read_spectrogram
    from tokenizer.multitaper import CANONICAL_BANDS

    t0 = time.perf_counter()
    spec = read_spectrogram(path, emb, threads=args.threads)
    ex = explain(spec, emb, probe, target=f"probe:{probe.task}", channels=False,
                 hemisphere_baseline=args.hemisphere_baseline)
    row = {"finding": finding, "session_id": session["session_id"], "side": session["side"], "probe": probe.task,
           "hemisphere_baseline": ex.hemisphere_baseline, "baseline": ex.baseline,
           "region": ex.region.tolist(), "band": ex.band.tolist(),
           "time": [None if not math.isfinite(v) else v for v in ex.time.tolist()], "events": events,
           "seconds": time.perf_counter() - t0}
    if args.compare_hemisphere_baselines and finding in LATERAL:
        other = "absent" if args.hemisphere_baseline == "mirror" else "mirror"
        alt = explain(spec, emb, probe, target=f"probe:{probe.task}", channels=False,
                      bands={"beta": CANONICAL_BANDS["beta"]}, time_method="gradient", hemisphere_baseline=other)
        row[f"region_{other}"] = alt.region.tolist()
    return spec, ex.minute_s, row

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", type=Path, default=Path("bench/out/study_200_legacy"))
    ap.add_argument("--model", default="stage1", help="Checkpoint folder name inside the study (its probes).")
    ap.add_argument("--max-positives", type=int, default=40)
    ap.add_argument("--skip", type=int, default=0, help="Leave out the first N positives of each finding.")
    ap.add_argument("--hemisphere-baseline", default="mirror", choices=("mirror", "absent"))
    ap.add_argument("--compare-hemisphere-baselines", action="store_true",
                    help="Also explain lateralised sessions with the other hemisphere baseline (regions).")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bandpower", action="store_true", help="Also explain the input_bandpower probes.")
    ap.add_argument("--findings", default=",".join(LATERAL + tuple(EPISODIC) + BETA))
    ap.add_argument("--out", type=Path, default=Path("bench/out/explain_validity"))
    ap.add_argument("--plant", default="", help="FINDING:N: plant the finding in N generated sessions (and N "
                    "without) and explain those positives too.")
    ap.add_argument("--plant-minutes", type=float, default=20.0)
    ap.add_argument("--summarise-only", action="store_true", help="Summarise the sessions already explained in --out.")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from benchmark_tasks.probes import load_probes
    from clef.embedding import Embedder
    from clef.explain import REGION_NAMES
    from tokenizer.multitaper import CANONICAL_BANDS
    from clef.synthetic.hospital import load_truth

    study = args.study
    hospital = study / "hospital"
    truth = load_truth(hospital)
    emb = Embedder(study / args.model)
    saved = load_probes(study / "results", model_id=emb.model_id)
    sp = emb.contract.spectrogram
    freqs = sp.fmin + np.arange(sp.n_freqs) / sp.window_s
    args.out.mkdir(parents=True, exist_ok=True)
    rows_path = args.out / "sessions.jsonl"
    done = {}
    if rows_path.is_file():
        for line in rows_path.read_text().splitlines():
            r = json.loads(line)
            done[(r["finding"], r["session_id"])] = r
    findings = [f for f in args.findings.split(",") if f]
    if args.summarise_only:
        summarise(list(done.values()), findings, args.bootstrap, args.out, REGION_NAMES, list(CANONICAL_BANDS))
        return
    flat = truth.select("session_id", "path", "findings").explode("findings").unnest("findings")
    for finding in findings:
        pos = flat.filter(pl.col("name") == finding).unique("session_id").sort("session_id")
        if finding in LATERAL:
            pos = pos.filter(pl.col("side").is_in(["L", "R"]))
        pos = pos.slice(args.skip, args.max_positives)
        if pos.height == 0:
            print(f"{finding}: no positive session in this hospital")
            continue
        probe = saved.get(f"eeg_{finding}") or embedding_probe(study, args.model, emb.model_id, finding, truth)
        bp = bandpower_probe(study, finding, truth) if args.bandpower else None
        events = events_of(hospital, pos["session_id"].to_list()) if finding in EPISODIC else {}
        print(f"{finding}: {pos.height} positives, probe {probe.task} ({'saved' if probe.task.startswith('eeg_') else 'fitted on the truth'})",
              flush=True)
        for r in pos.iter_rows(named=True):
            key = (finding, r["session_id"])
            if key in done:
                continue
            spec, minute_s, row = explain_row(hospital / r["path"], emb, probe, finding, r, args,
                                    [e for e in events.get(r["session_id"], []) if e[2] == EPISODIC.get(finding)])
            if bp is not None:
                b = bandpower_explain(spec, freqs, tuple(emb.contract.channels), bp, minute_s)
                row["bp_probe"] = bp.task
                row["bp_region"] = b["region"].tolist()
                row["bp_band"] = b["band"].tolist()
                row["bp_time"] = [None if not math.isfinite(v) else v for v in b["time"].tolist()]
            with rows_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            done[key] = row
            print(f"  {r['session_id']} {row['seconds']:.1f} s", flush=True)
    if args.plant:
        finding, n = args.plant.split(":")
        planted = plant_sessions(args.out / "planted", finding, int(n), args.plant_minutes)
        from benchmark_tasks.probes import TaskProbe, fit_logistic_probe

        x = np.stack([emb.embed(r["path"]).vector for r in planted]).astype(np.float64)
        y = np.array([r["positive"] for r in planted], dtype=int)
        probe = TaskProbe(f"planted_{finding}", fit_logistic_probe(x, y), emb.model_id)
        print(f"{finding}: {int(y.sum())} planted positives, probe fitted on {len(y)} generated sessions", flush=True)
        for r in planted:
            key = (finding, r["session_id"])
            if not r["positive"] or key in done:
                continue
            _, _, row = explain_row(r["path"], emb, probe, finding, r, args, [])
            row["planted"] = True
            with rows_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            done[key] = row
            print(f"  {r['session_id']} {row['seconds']:.1f} s", flush=True)
        if finding not in findings:
            findings.append(finding)
    summarise(list(done.values()), findings, args.bootstrap, args.out, REGION_NAMES, list(CANONICAL_BANDS))


def _hit(kind: str, row: dict, region: list, band: list, tattr: list, regions: tuple, bands: list,
         rng: np.random.Generator | None) -> float | None:
    """One session's hit (1/0) under the finding's check; ``rng``: a random attribution instead."""
    if kind == "lateral":
        l_i, r_i = regions.index("left"), regions.index("right")
        left, right = (rng.normal(size=2) if rng is not None else (region[l_i], region[r_i]))
        if left == right:
            return None
        return float(("L" if left > right else "R") == row["side"])
    if kind == "beta":
        b = rng.normal(size=len(bands)) if rng is not None else np.nan_to_num(np.asarray(band, float), nan=-np.inf)
        return float(bands[int(np.argmax(b))] == "beta")
    t = np.array([np.nan if v is None else v for v in tattr], dtype=float)
    valid = np.flatnonzero(np.isfinite(t))
    if valid.size == 0 or not row["events"]:
        return None
    k = int(rng.choice(valid)) if rng is not None else int(np.nanargmax(t))
    a, b = k * 60.0, (k + 1) * 60.0
    return float(any(on < b and off > a for on, off, _ in row["events"]))


def summarise(rows: list[dict], findings: list[str], n_boot: int, out: Path, regions: tuple, bands: list) -> None:
    lines = ["| finding | check | model | sessions | hit rate [95 % CI] | random attribution [2.5-97.5 % of 200 draws] |",
             "|---|---|---|---|---|---|"]
    for finding in findings:
        kind = "lateral" if finding in LATERAL else "beta" if finding in BETA else "episodic"
        check = {"lateral": "attributed hemisphere = true side", "beta": "beta band largest",
                 "episodic": "top minute overlaps an event"}[kind]
        sel = [r for r in rows if r["finding"] == finding]
        if not sel:
            continue
        mode = sel[0].get("hemisphere_baseline", "absent")
        other = "absent" if mode == "mirror" else "mirror"
        models = [(f"embedding probe ({mode})" if kind == "lateral" else "embedding probe", "", "region"),
                  (f"embedding probe ({other})", "", f"region_{other}"), ("band-power probe", "bp_", "bp_region")]
        for model, prefix, region_key in models:
            if region_key not in sel[0]:
                continue
            hits = [_hit(kind, r, r[region_key], r[prefix + "band"], r[prefix + "time"], regions, bands, None)
                    for r in sel]
            h = np.array([v for v in hits if v is not None])
            rnd = []
            for rep in range(200):  # the random baseline's hit rate, averaged over draws
                g = np.random.default_rng(rep)
                rnd.append([_hit(kind, r, r[region_key], r[prefix + "band"], r[prefix + "time"], regions, bands,
                                 g) for r in sel])
            rnd_h = np.array([[v for v in d if v is not None] for d in rnd], dtype=float)
            rnd_mean = rnd_h.mean(1)
            lo, hi = bootstrap_ci(h, n_boot)
            lines.append(f"| {finding} | {check} | {model} | {h.size} | {h.mean():.2f} [{lo:.2f}, {hi:.2f}] | "
                         f"{rnd_mean.mean():.2f} [{np.percentile(rnd_mean, 2.5):.2f}, "
                         f"{np.percentile(rnd_mean, 97.5):.2f}] |")
    secs = [r["seconds"] for r in rows]
    lines.append("")
    lines.append(f"{len(rows)} explanations, {np.median(secs):.1f} s median each (read + explain, regions/bands/"
                 f"minutes, 1 thread, loaded machine)." if secs else "no explanation")
    text = "\n".join(lines)
    (out / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
