"""Report finding extraction measured against the synthetic hospital's truth.

Usage::

    python bench/findings.py [--hospital DIR | --reports-only] [--patients 100] [--seed 0]
                             [--workers 2] [--markdown bench/out/findings.md]

Without ``--hospital``, a hospital is generated with
``clef.synthetic.hospital.synthesize_hospital`` (short sessions: only the reports matter
here) into ``bench/out/hospital_findings_p{N}_s{seed}``, or reused if already there.
``--reports-only`` instead writes only the reports (population model + a hand-built EEG
summary per session, no EDF) into ``bench/out/reports_only_p{N}_s{seed}``: thousands of
reports in seconds, with the rare findings (LPDs) represented.

For every report ``reports/{session_id}.txt`` of the hospital, ``reports.finding_labels``
is compared with two references from ``truth.parquet``:

(a) **what the report asserts** (``report_asserted``; "normal" when it asserts nothing;
    "sleep" when the EEG reached N2/N3, which every report states): the extractor's own
    job, reading the report, so it should be near-perfect;
(b) **what the EEG contains** (``finding_names``; same conventions): differs from (a) by
    the planted misses and over-calls of the report writer, i.e. the label noise a
    report-derived benchmark task inherits.

It also reports side agreement for lateralised findings (against the EEG truth, where it
has one side), PHI left after ``scrub_phi`` (``report_phi``), label changes caused by
scrubbing, and the time per report.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def _generate(n_patients: int, seed: int, workers: int) -> Path:
    from clef.synthetic.hospital import HospitalConfig, synthesize_hospital

    out = OUT / f"hospital_findings_p{n_patients}_s{seed}"
    if (out / "truth.parquet").is_file():
        print(f"reusing {out}")
        return out
    t0 = time.perf_counter()
    s = synthesize_hospital(out, n_patients, seed=seed, config=HospitalConfig(minutes_range=(1.0, 2.0)),
                            workers=workers, overwrite=True)
    print(f"generated {s.n_sessions} sessions of {s.n_patients} patients in {time.perf_counter() - t0:.0f} s -> {out}")
    return out


def _generate_reports_only(n_patients: int, seed: int) -> Path:
    """Reports (no EDF) from the population model with a hand-built EEG summary per session.

    The summary carries the session's planted findings, a PDR (slow with ``pdr_slowing``,
    absent with burst suppression/low voltage and in a third of ICU sessions), N2 sleep in
    every other session and IED/seizure events on fixed electrodes, so thousands of
    reports take seconds and the rare findings (LPDs) appear.
    """
    import numpy as np
    import polars as pl

    from clef.synthetic import spec
    from clef.synthetic.population import generate_population
    from clef.synthetic.reports import write_report

    out = OUT / f"reports_only_p{n_patients}_s{seed}"
    (out / "reports").mkdir(parents=True, exist_ok=True)
    pop = generate_population(n_patients, seed)
    rng = np.random.default_rng(seed)
    rows = []
    for i, s in enumerate(pop.sessions):
        names = {f.name for f in s.findings}
        pdr: float | None = 6.5 if "pdr_slowing" in names else 9.5
        if names & {"burst_suppression", "low_voltage"} or (s.setting == "icu" and i % 3 == 0):
            pdr = None
        d = s.duration_s
        states = [spec.StateSpan(0.0, 0.5 * d, "awake"), spec.StateSpan(0.5 * d, 0.7 * d, "drowsy")]
        if i % 2 == 0:
            states.append(spec.StateSpan(0.7 * d, d, "n2"))
        events = []
        for f in s.findings:
            if f.name == "ied_focal":
                chans = ("F7", "T3") if f.side == "L" else ("F8", "T4")
                events += [spec.EEGEvent(10.0 * k, 0.2, "ied_focal", chans) for k in range(1, 4)]
            if f.name == "seizure":
                events.append(spec.EEGEvent(100.0, 60.0, "seizure", ("T3", "T5")))
        eeg = spec.EEGSummary(pdr_hz=pdr, states=tuple(states), events=tuple(events), findings=s.findings)
        r = write_report(s, pop.patient(s.patient_id), eeg, rng, pop.config)
        (out / "reports" / f"{s.session_id}.txt").write_text(r.text, encoding="utf-8")
        rows.append({
            "session_id": s.session_id,
            "findings": [{"name": f.name, "severity": float(f.severity), "side": f.side, "cause": f.cause}
                         for f in s.findings],
            "finding_names": sorted(names),
            "reached_sleep": eeg.reached_sleep,
            "report_asserted": list(r.asserted),
            "report_phi": list(r.phi),
        })
    pl.DataFrame(rows).write_parquet(out / "truth.parquet")
    print(f"wrote {len(rows)} reports of {n_patients} patients (no EDF) -> {out}")
    return out


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / (tp + fn) if tp + fn else float("nan")
    f = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return p, r, f


def _fmt(x: float) -> str:
    return "  n/a" if math.isnan(x) else f"{x:.3f}"


def evaluate(hospital: Path) -> str:
    """Run the comparison on one hospital folder; return the markdown report."""
    import polars as pl

    from reports import (
        LATERALIZED_FINDINGS,
        REPORT_FINDINGS,
        extract_findings,
        labels_from_mentions,
        read_report,
    )
    from reports.phi import scrub_phi

    truth = pl.read_parquet(hospital / "truth.parquet")
    refs = {"asserted": {}, "eeg": {}}
    preds: dict[str, dict[str, int]] = {}
    side_n = side_ok = phi_left = scrub_changed = 0
    t_extract = t_scrub = 0.0
    for row in truth.iter_rows(named=True):
        sid = row["session_id"]
        text = read_report(hospital / "reports" / f"{sid}.txt")
        t0 = time.perf_counter()
        mentions = extract_findings(text)
        t_extract += time.perf_counter() - t0
        labels = labels_from_mentions(mentions)
        preds[sid] = labels
        for key, col in (("asserted", "report_asserted"), ("eeg", "finding_names")):
            ref = set(row[col]) or {"normal"}
            if row["reached_sleep"]:
                ref.add("sleep")
            refs[key][sid] = ref
        t0 = time.perf_counter()
        scrubbed = scrub_phi(text).text
        t_scrub += time.perf_counter() - t0
        phi_left += any(p.lower() in scrubbed.lower() for p in row["report_phi"])
        scrub_changed += labels_from_mentions(extract_findings(scrubbed)) != labels
        for name in LATERALIZED_FINDINGS - {"seizure"}:
            sides = {f["side"] for f in row["findings"] if f["name"] == name}
            if labels[name] and len(sides) == 1 and None not in sides:
                side_n += 1
                side_ok += {m.side for m in mentions if m.name == name and m.status == "present"} == sides

    n = truth.height
    lines = [f"Hospital: `{hospital}` ({n} reports)", "",
             "| finding | n+ asserted | P | R | F1 | n+ EEG | P | R | F1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    micro = {k: [0, 0, 0] for k in refs}
    macro: dict[str, list[float]] = {k: [] for k in refs}
    for f in REPORT_FINDINGS:
        cells = [f]
        for key in ("asserted", "eeg"):
            tp = sum(1 for s in preds if preds[s][f] and f in refs[key][s])
            fp = sum(1 for s in preds if preds[s][f] and f not in refs[key][s])
            fn = sum(1 for s in preds if not preds[s][f] and f in refs[key][s])
            for i, v in enumerate((tp, fp, fn)):
                micro[key][i] += v
            p, r, f1 = _prf(tp, fp, fn)
            if tp + fn:
                macro[key].append(f1)
            cells += [str(tp + fn), _fmt(p), _fmt(r), _fmt(f1)]
        lines.append("| " + " | ".join(cells) + " |")
    mp = {k: _prf(*micro[k]) for k in refs}
    lines.append("| **micro** | {} | {} | {} | {} | {} | {} | {} | {} |".format(
        micro["asserted"][0] + micro["asserted"][2], *map(_fmt, mp["asserted"]),
        micro["eeg"][0] + micro["eeg"][2], *map(_fmt, mp["eeg"])))
    lines.append("| **macro F1** | | | | {} | | | | {} |".format(
        _fmt(sum(macro["asserted"]) / len(macro["asserted"])), _fmt(sum(macro["eeg"]) / len(macro["eeg"]))))
    lines += ["",
              f"- side of lateralised findings (vs EEG truth, one side planted): {side_ok}/{side_n} correct",
              f"- reports with planted PHI left after `scrub_phi`: {phi_left}/{n}",
              f"- reports whose labels change after scrubbing: {scrub_changed}/{n}",
              f"- time per report: extraction {1000 * t_extract / n:.1f} ms, PHI scrubbing {1000 * t_scrub / n:.1f} ms"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hospital", type=Path, default=None, help="existing synthetic hospital folder")
    ap.add_argument("--patients", type=int, default=100, help="patients when generating a hospital")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reports-only", action="store_true",
                    help="generate reports without EDF (population model + hand-built EEG summaries): fast, large")
    ap.add_argument("--markdown", type=Path, default=OUT / "findings.md", help="where to write the table")
    args = ap.parse_args(argv)
    if args.hospital is not None:
        hospital = args.hospital
    elif args.reports_only:
        hospital = _generate_reports_only(args.patients, args.seed)
    else:
        hospital = _generate(args.patients, args.seed, args.workers)
    if not (hospital / "truth.parquet").is_file():
        raise SystemExit(f"{hospital} is not a synthetic hospital (no truth.parquet)")
    md = evaluate(hospital)
    print(md)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(md + "\n")
    print(f"\nwritten to {args.markdown}")


if __name__ == "__main__":
    main()
