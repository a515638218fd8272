"""The synthetic hospital: an EEG archive, FHIR EHR and reports with known ground truth.

``synthesize_hospital`` writes, deterministically per seed::

    OUT/edf/<site>/<patient>/<session>.edf   EDF+ files in each site's vendor style
    OUT/fhir/<patient>.json                  one FHIR R4 Bundle per patient
    OUT/reports/<session>.txt                one neurologist report per session
    OUT/sessions.csv                         session ↔ patient ↔ encounter ↔ file links
    OUT/truth.parquet                        the hidden truth (validation code only)
    OUT/hospital.json                        seed, sizes, configuration digest

With ``write_eeg=False`` every session is still simulated (its report describes what the
simulated EEG contains) but no EDF is written: the FHIR, reports, ``sessions.csv`` and
``truth.parquet`` are byte-for-byte those of the full hospital, for a fraction of the disk
(a cohort to count tasks on; ``sessions.csv`` paths then name files that do not exist).

Sites differ like real vendors (label style, sampling rate, extra channels, missing
electrodes, physical range, header PHI). The pipeline never reads ``truth.parquet``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import polars as pl
from pydantic import Field

from clef.config import FrozenConfig
from clef.synthetic.eeg import EEGSimConfig, simulate_eeg
from clef.synthetic.fhir import patient_bundle, validate_bundle
from clef.synthetic.population import generate_population
from clef.synthetic.population_config import PopulationConfig
from clef.synthetic.recordings import NEW_NAMES
from clef.synthetic.records import Patient, Population, SessionTruth
from clef.synthetic.reports import write_report
from tokenizer.atomic import atomic_path, write_parquet_atomic, write_text_atomic
from tokenizer.contract import CANONICAL_CHANNELS
from tokenizer.edf_writer import EDFSignal, write_edf


class VendorStyle(FrozenConfig):
    """How one site's EEG system writes EDF files.

    Attributes
    ----------
    label : str
        Format of an EEG label; ``{ch}`` / ``{CH}`` is the electrode name as-is / upper case.
    new_temporal_names : bool
        Write T7/T8/P7/P8 instead of T3/T4/T5/T6.
    sfreq : float
        Sampling rate (Hz).
    fmt : str
        ``EDF+C`` or ``EDF``.
    physical_range_uv : float
        Symmetric physical range of EEG channels (µV); digital range is int16.
    missing : tuple of str
        Electrodes this site never records.
    extras : tuple of str
        Non-EEG channel labels appended (ECG-like, photic, DC, oximetry ...).
    """

    label: str
    new_temporal_names: bool = False
    sfreq: float = 256.0
    fmt: str = "EDF+C"
    physical_range_uv: float = 3276.7
    missing: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()


#: Vendor styles assigned to the population's sites in order (cycled if there are more).
DEFAULT_STYLES: tuple[VendorStyle, ...] = (
    VendorStyle(label="EEG {CH}-REF", sfreq=256, extras=("EEG EKG1-REF", "PHOTIC-REF")),
    VendorStyle(label="EEG {ch}-Ref", sfreq=200, physical_range_uv=3200.0,
                extras=("POL E", "POL PG1", "POL DC01", "ECG ECG1", "SaO2 X9")),
    VendorStyle(label="{ch}", sfreq=500, fmt="EDF", extras=("ECG",)),
    VendorStyle(label="EEG {ch}", new_temporal_names=True, sfreq=256, missing=("Fz", "Pz"), extras=("EKG",)),
    VendorStyle(label="EEG {CH}-LE", sfreq=250, physical_range_uv=4999.8, extras=("EEG EKG-LE", "PHOTIC PH")),
)


class HospitalConfig(FrozenConfig):
    """Everything that shapes the synthetic hospital (all strengths are config values).

    Attributes
    ----------
    population : PopulationConfig
        Sites, demographics, conditions, medications, signatures, report error rates.
    eeg : EEGSimConfig
        Strength of every EEG effect and artefact.
    styles : tuple of VendorStyle
        EDF writing style per site, in site order.
    minutes_range : tuple of float, optional
        If set, every session's duration is redrawn uniformly in this range (minutes).
    """

    population: PopulationConfig = Field(default_factory=PopulationConfig)
    eeg: EEGSimConfig = Field(default_factory=EEGSimConfig)
    styles: tuple[VendorStyle, ...] = DEFAULT_STYLES
    minutes_range: tuple[float, float] | None = None

    def style_of(self, site: str) -> VendorStyle:
        """The vendor style of a site id."""
        ids = [s.site_id for s in self.population.sites]
        return self.styles[ids.index(site) % len(self.styles)]


@dataclass(frozen=True)
class HospitalSummary:
    """What ``synthesize_hospital`` wrote."""

    out: Path
    n_patients: int
    n_sessions: int
    hours_of_eeg: float
    seconds: float


def _label(style: VendorStyle, ch: str) -> str:
    name = NEW_NAMES.get(ch, ch) if style.new_temporal_names else ch
    return style.label.format(ch=name, CH=name.upper())


def _edf_phi(p: Patient, s: SessionTruth, style: VendorStyle) -> tuple[str, str]:
    """Header patient/recording fields with fake PHI, as a real export writes them."""
    sex = "F" if p.sex == "female" else "M"
    birth = p.birth_date.strftime("%d-%b-%Y").upper()
    name = f"{p.family_name}_{p.given_name}".replace(" ", "_")
    patient = f"{p.mrn} {sex} {birth} {name}"
    if style.fmt == "EDF":  # plain EDF: free text, as older systems write it
        patient = f"{p.mrn} {p.family_name}, {p.given_name} {p.birth_date.strftime('%d.%m.%Y')}"
    rec = f"Startdate {s.start.strftime('%d-%b-%Y').upper()} {s.encounter_id} Tech_{p.family_name[:3]} EEG-{s.site}"
    return patient[:80], rec[:80]


def _extra_signal(label: str, n: int, sfreq: float, rng: np.random.Generator) -> EDFSignal:
    t = np.arange(n) / sfreq
    low = label.lower()
    if "ekg" in low or "ecg" in low:
        beats = (np.sin(2 * np.pi * 1.15 * t) > 0.995).astype(float)
        return EDFSignal(label, 800 * beats + rng.normal(0, 10, n), sfreq, unit="uV")
    if "sao2" in low:
        return EDFSignal(label, 96 + rng.normal(0, 0.3, n), sfreq, unit="%")
    if "dc" in low:
        return EDFSignal(label, np.full(n, 12.0) + rng.normal(0, 0.1, n), sfreq, unit="mV")
    if "photic" in low:
        return EDFSignal(label, np.zeros(n), sfreq, unit="", physical_min=-1, physical_max=1)
    return EDFSignal(label, rng.normal(0, 5, n), sfreq, unit="uV")


def session_relpath(s: SessionTruth) -> str:
    """Path of a session's EDF relative to the hospital folder."""
    return f"edf/{s.site}/{s.patient_id}/{s.session_id}.edf"


def _write_session(args: tuple[Path, SessionTruth, Patient, HospitalConfig, bool]) -> dict:
    """Simulate, write the EDF (if ``write_eeg``) and the report of one session; return its truth row."""
    out, s, p, cfg, write_eeg = args
    style = cfg.style_of(s.site)
    data, summary = simulate_eeg(s.to_spec(), style.sfreq, cfg.eeg)
    rng = np.random.default_rng(np.random.SeedSequence([s.seed, 7]))
    n_rec = data.shape[1] // int(style.sfreq)  # whole 1-s records
    n = n_rec * int(style.sfreq)
    r = style.physical_range_uv
    signals = [
        EDFSignal(_label(style, ch), data[k, :n], style.sfreq, physical_min=-r, physical_max=r,
                  prefilter="HP:0.1Hz LP:100Hz")
        for k, ch in enumerate(CANONICAL_CHANNELS) if ch not in style.missing
    ]
    signals += [_extra_signal(lab, n, style.sfreq, rng) for lab in style.extras]
    annotations = []
    if style.fmt != "EDF":
        names = {"hyperventilation": "HV start", "photic": "Photic stimulation", "eyes_open": "Eyes open"}
        annotations = [(e.onset_s, e.duration_s, names[e.kind]) for e in summary.events
                       if e.kind in names and e.onset_s < n_rec]
    patient_field, recording_field = _edf_phi(p, s, style)
    # the extra channels above are drawn even without an EDF: they advance ``rng``, which
    # then writes the report, so the report is the same with or without the EEG file
    if write_eeg:
        write_edf(out / session_relpath(s), signals, fmt=style.fmt, start=s.start.replace(tzinfo=None),
                  patient=patient_field, recording=recording_field, annotations=annotations)
    report = write_report(s, p, summary, rng, cfg.population)
    write_text_atomic(report.text, out / "reports" / f"{s.session_id}.txt")
    return {
        "session_id": s.session_id,
        "patient_id": s.patient_id,
        "encounter_id": s.encounter_id,
        "site": s.site,
        "setting": s.setting,
        "start": s.start.isoformat(),
        "duration_s": float(n_rec),
        "age_years": float(s.age_years),
        "sex": p.sex,
        "race": p.race,
        "condition_codes": list(s.condition_codes),
        "atc_codes": list(s.atc_codes),
        "findings": [{"name": f.name, "severity": float(f.severity), "side": f.side, "cause": f.cause}
                     for f in summary.findings],
        "finding_names": sorted({f.name for f in summary.findings}),
        "pdr_hz": summary.pdr_hz,
        "reached_sleep": summary.reached_sleep,
        "states": [{"start_s": st.start_s, "stop_s": st.stop_s, "state": st.state} for st in summary.states],
        "n_ieds": summary.count("ied_focal") + summary.count("ied_generalized"),
        "n_seizures": summary.count("seizure"),
        "report_asserted": list(report.asserted),
        "report_missed": list(report.missed),
        "report_overcalled": list(report.overcalled),
        "report_phi": list(report.phi),
        "edf_phi": [p.mrn, p.family_name, p.given_name, p.birth_date.strftime("%d-%b-%Y").upper()],
        "path": session_relpath(s),
        "seed": s.seed,
    }


def _redraw_durations(pop: Population, minutes: tuple[float, float]) -> Population:
    lo, hi = sorted(minutes)
    sessions = []
    for s in pop.sessions:
        u = np.random.default_rng(np.random.SeedSequence([s.seed, 11])).uniform(lo, hi)
        sessions.append(replace(s, duration_s=float(round(u * 60))))
    return replace(pop, sessions=tuple(sessions))


def synthesize_hospital(
    out: str | Path,
    n_patients: int,
    *,
    seed: int = 0,
    config: HospitalConfig | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    write_eeg: bool = True,
) -> HospitalSummary:
    """Generate a synthetic hospital into ``out``.

    Parameters
    ----------
    out : str or Path
        Output folder; must be empty or absent unless ``overwrite``.
    n_patients : int
        Patients (each with 1–4 sessions).
    seed : int
        Seed: the same seed and config give the same files.
    config : HospitalConfig, optional
        Population, EEG and vendor-style configuration.
    workers : int, optional
        Processes writing sessions in parallel (default: all cores).
    progress : callable, optional
        Called as ``progress(done, total)`` after each session.
    overwrite : bool
        Allow writing into a non-empty folder.
    write_eeg : bool
        Write the EDF files (default). False: simulate every session as usual but write
        only FHIR, reports, ``sessions.csv``, ``truth.parquet`` and ``hospital.json``
        (the first four identical to the full hospital's; 4 MB instead of 9 GB for 200
        patients; the simulation's CPU time unchanged): a cohort to generate a suite on.

    Returns
    -------
    HospitalSummary
    """
    t0 = time.perf_counter()
    cfg = config or HospitalConfig()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; choose a new folder or overwrite (--overwrite)")
    pop = generate_population(n_patients, seed, cfg.population)
    if cfg.minutes_range is not None:
        pop = _redraw_durations(pop, cfg.minutes_range)
    for d in ("fhir", "reports"):
        (out / d).mkdir(parents=True, exist_ok=True)
    patients = {p.patient_id: p for p in pop.patients}
    jobs = [(out, s, patients[s.patient_id], cfg, write_eeg) for s in pop.sessions]
    rows: list[dict] = []
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=workers) if workers > 1 and len(jobs) > 1 else nullcontext() as ex:
        for row in ex.map(_write_session, jobs, chunksize=1) if ex else map(_write_session, jobs):
            rows.append(row)
            if progress:
                progress(len(rows), len(jobs))

    names = {s.site_id: s.name for s in cfg.population.sites}
    for p in pop.patients:
        bundle = patient_bundle(p, pop.sessions_of(p.patient_id), site_names=names)
        validate_bundle(bundle)
        write_text_atomic(json.dumps(bundle, indent=1), out / "fhir" / f"{p.patient_id}.json")
    # the hospital export: links only, no labels
    _write_csv(out / "sessions.csv", rows,
               ("session_id", "patient_id", "encounter_id", "path", "site", "setting", "start"))
    truth = pl.DataFrame(rows)
    write_parquet_atomic(truth, out / "truth.parquet")
    hours = float(sum(r["duration_s"] for r in rows) / 3600)
    meta = {
        "generator": "clef.synthetic.hospital",
        "seed": seed,
        "n_patients": n_patients,
        "n_sessions": len(rows),
        "hours_of_eeg": round(hours, 2),
        "eeg_written": write_eeg,
        "config_sha256": hashlib.sha256(cfg.model_dump_json().encode()).hexdigest(),
        "sites": {s.site_id: cfg.style_of(s.site_id).model_dump() for s in cfg.population.sites},
    }
    write_text_atomic(json.dumps(meta, indent=2), out / "hospital.json")
    return HospitalSummary(out, n_patients, len(rows), hours, time.perf_counter() - t0)


def _write_csv(path: Path, rows: Iterable[dict], cols: Sequence[str]) -> None:
    """A ``sessions.csv``: the columns ``cols`` of ``rows``."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def load_truth(out: str | Path) -> pl.DataFrame:
    """Read the hidden truth of a synthetic hospital (validation code only)."""
    return pl.read_parquet(Path(out) / "truth.parquet")


def subset_hospital(hospital: str | Path, out: str | Path, n: int, *, link: bool = False) -> list[Path]:
    """The first ``n`` sessions of a hospital, by path, as an archive of their own.

    For a smaller archive of the same layout (tests, benchmarks): the recordings and the
    ``sessions.csv`` rows with all their columns; FHIR bundles, reports and the truth
    table are not copied.

    Parameters
    ----------
    hospital : path
        A folder with a ``sessions.csv`` (``session_id``, ``path``, ...), as
        :func:`synthesize_hospital` writes it.
    out : path
        New archive folder (created; files already there are replaced).
    n : int
        Sessions to keep, at least 1.
    link : bool
        Hard-link the recordings instead of copying them (copied all the same across devices).

    Returns
    -------
    list of Path
        The recordings in ``out``, in path order.
    """
    hospital, out = Path(hospital), Path(out)
    with open(hospital / "sessions.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["path"])[:n]
    if not rows:
        raise ValueError(f"{hospital}: no session to copy (n={n})")
    files = []
    for r in rows:
        src, dst = hospital / r["path"], out / r["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.unlink(missing_ok=True)
        if link:
            try:
                os.link(src, dst)
            except OSError:  # another device
                shutil.copy2(src, dst)
        else:
            shutil.copy2(src, dst)
        files.append(dst)
    _write_csv(out / "sessions.csv", rows, list(rows[0]))
    return files
