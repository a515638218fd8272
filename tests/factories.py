"""Builders of test data: generated EDF/BDF files, damaged copies of real files, token
folders, archives, embedding stores and benchmark suites.

The one module of builders the tests share (fixtures live in ``conftest.py``); test
modules import from here, never from each other.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import polars as pl
import pytest

from clef.synthetic.hospital import subset_hospital
from tokenizer import CANONICAL_CHANNELS
from tokenizer.edf_writer import EDFSignal, write_edf
from tokenizer.tokens import TOKENS_SCHEMA
from tokenizer.vqgan import VQGANConfig

#: CHB-MIT's double banana on the 19 10-20 electrodes, labelled as CHB-MIT labels it (T7/P7
#: for T3/T5): the four temporal and parasagittal chains, the midline chain (connected to
#: nothing else, so masked), the repeats ``P7-T7`` (``T7-P7`` reversed) and a second
#: ``T8-P8``, and the bridge between the temporal chains, CHB-MIT's ``T7-FT9``,
#: ``FT9-FT10``, ``FT10-T8`` taken as one ``T7-T8`` (a 10-20 file has no FT9/FT10). Without
#: that bridge a double banana is three unconnected groups and cannot be converted.
DOUBLE_BANANA: tuple[str, ...] = (
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1",
    "FP2-F4", "F4-C4", "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
    "FZ-CZ", "CZ-PZ", "P7-T7", "T7-T8", "T8-P8",
)
#: The central transverse chain of TUH's TCP montage that links the midline to both sides.
CENTRAL_CHAIN: tuple[str, ...] = ("T7-C3", "C3-CZ", "CZ-C4", "C4-T8")


def write_bipolar_edf(path: Path, source: Path, derivations: Sequence[str] = DOUBLE_BANANA, *,
                      flip: Sequence[str] = (), flat: Sequence[str] = ()) -> Path:
    """Re-montage a referential EDF as bipolar derivations, written with pyedflib.

    Each derivation ``A-B`` is the source's physical ``A`` minus ``B`` at the source rate
    (channels found by their canonical 10-20 name; T7/T8/P7/P8 are T3/T4/T5/T6). A label
    in ``flip`` is written with the opposite polarity (a mislabelled derivation), one in
    ``flat`` as zeros (a disconnected input).
    """
    import pyedflib

    from tokenizer.channels import classify_label

    with pyedflib.EdfReader(str(source)) as f:
        by_name = {}
        for i, label in enumerate(f.getSignalLabels()):
            kind, name, _ = classify_label(label, CANONICAL_CHANNELS)
            if kind == "canonical" and name not in by_name:
                by_name[name] = (f.readSignal(i), f.getSampleFrequency(i))
    headers, samples = [], []
    for label in derivations:
        a, b = (classify_label(side, CANONICAL_CHANNELS)[1] for side in label.split("-"))
        (xa, fs), (xb, _) = by_name[a], by_name[b]
        x = (xb - xa) if label in flip else (xa - xb)
        if label in flat:
            x = np.zeros_like(x)
        top = float(np.ceil(np.abs(x).max() * 1.05 + 1.0))
        headers.append({"label": label, "dimension": "uV", "sample_frequency": fs, "physical_max": top,
                        "physical_min": -top, "digital_max": 32767, "digital_min": -32768,
                        "transducer": "", "prefilter": ""})
        samples.append(x)
    with pyedflib.EdfWriter(str(path), len(headers), file_type=pyedflib.FILETYPE_EDFPLUS) as w:
        w.setSignalHeaders(headers)
        w.writeSamples(samples)
    return path


# -- real files shipped with the tests, and damaged the way archives damage them ---------------

#: The real EDF/BDF files shipped with the tests: provenance, licences and how the longer
#: ones were cut are in ``tests/data/real/README.md``.
REAL_DIR = Path(__file__).resolve().parent / "data" / "real"


def real_file(name: str) -> Path:
    """The real file ``name`` (relative to :data:`REAL_DIR`).

    Files without a licence that allows shipping them (listed in the README) are read from
    the folder named by ``CLEF_TEST_REAL_EXTRA`` when it is set; otherwise the test skips.
    Nothing outside the repository is looked at unless that variable says where.
    """
    path = REAL_DIR / name
    if path.is_file():
        return path
    extra = os.environ.get("CLEF_TEST_REAL_EXTRA")
    if extra and (Path(extra) / name).is_file():
        return Path(extra) / name
    pytest.skip(f"{name} is not shipped (no licence that allows redistributing it: tests/data/real/README.md); "
                "set CLEF_TEST_REAL_EXTRA to a folder holding it")


def copy_real(src: Path, dst: Path) -> Path:
    """A writable copy of a (read-only) real file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(Path(src).read_bytes())
    return dst


def set_patient_field(path: Path, text: str) -> Path:
    """Rewrite the 80-byte patient field (EDF+: ``code sex birthdate name``), as a device
    that was given no ID writes it (Nihon Kohden ``0 X 01-JAN-2019 No_Name``, NeuroCom ``0``)."""
    raw = bytearray(path.read_bytes())
    raw[8:88] = text.encode("latin-1").ljust(80)[:80]
    path.write_bytes(bytes(raw))
    return path


def set_record_count(path: Path, n: int) -> Path:
    """Write ``n`` (e.g. -1, "unknown" while recording) into the header's record count."""
    raw = bytearray(path.read_bytes())
    raw[236:244] = str(n).encode().ljust(8)
    path.write_bytes(bytes(raw))
    return path


def cut_mid_record(path: Path, complete: int, fraction: float = 0.5) -> Path:
    """Cut a file after ``complete`` whole data records and ``fraction`` of the next, as a
    crashed recorder or a half-finished copy leaves it (the header still announces all)."""
    from tokenizer import read_header

    h = read_header(path)
    path.write_bytes(path.read_bytes()[: h.header_bytes + complete * h.record_bytes + int(fraction * h.record_bytes)])
    return path


def keep_records(path: Path, n: int) -> Path:
    """Keep only the first ``n`` data records and say so in the header: a complete file of
    ``n`` records (a recording stopped after a few seconds)."""
    from tokenizer import read_header

    h = read_header(path)
    path.write_bytes(path.read_bytes()[: h.header_bytes + n * h.record_bytes])
    return set_record_count(path, n)


# -- labels as other systems write them (issue 17) ------------------------------------------

def relabel(src: Path, dst: Path, labels: Mapping[str, str] | Callable[[str], str] | Sequence[str]) -> Path:
    """Copy an EDF/BDF file with its channel labels rewritten in the header bytes (data untouched).

    ``labels`` is ``{old: new}`` (others kept), a function of the old label, or the new
    labels of the signals in file order (annotation channels always keep theirs).
    """
    raw = bytearray(Path(src).read_bytes())
    n = int(raw[252:256].decode("ascii").strip())
    signals = 0
    for i in range(n):
        at = 256 + 16 * i
        old = raw[at:at + 16].decode("latin-1").strip()
        if old.lower() in ("edf annotations", "bdf annotations"):
            continue
        if callable(labels):
            new = labels(old)
        elif isinstance(labels, Mapping):
            new = labels.get(old, old)
        else:
            new = labels[signals]
        signals += 1
        if len(new) > 16:
            raise ValueError(f"an EDF label holds 16 characters, found {new!r}")
        raw[at:at + 16] = new.encode("latin-1").ljust(16)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_bytes(bytes(raw))
    return Path(dst)


def biosemi_abc_labels(groups: str = "ABCDEFGH") -> list[str]:
    """Electrode names of a BioSemi ABC cap: ``A1``..``A32``, ``B1``.. for each group
    (``ABCD``: the 128 cap, ``ABCDEFGH``: the 256 cap)."""
    return [f"{g}{k}" for g in groups for k in range(1, 33)]

# -- waiting on a condition ------------------------------------------------------------------

def wait_until(condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.01,
               message: str = "condition") -> None:
    """Poll ``condition`` until it is true; fail the test after ``timeout`` seconds.

    Tests wait on what they observe, never on a fixed sleep: a sleep long enough for a
    loaded machine slows every run, a short one makes the test flaky.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout} s")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(app: Any, *, log_level: str = "warning", timeout: float = 30.0) -> Iterator[str]:
    """``app`` served for real by uvicorn (a thread) on a free loopback port; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout, message="the server started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# -- session-transformer token folders (no tokenizer needed) ---------------------------------

def write_fake_tokens(out: Path, n_sessions: int = 24, grid: tuple[int, int] = (4, 16), vocab: int = 64,
                      seed: int = 0, windows: int = 2) -> Path:
    """Tokens with learnable structure: each session has a class (0/1) that shifts its codes,
    and codes run in short constant stretches along time, so masked tokens are predictable
    from their neighbours. Returns ``out``; session classes in ``out/classes.json``."""
    rng = np.random.default_rng(seed)
    gf, gt = grid
    rows, classes = [], {}
    for s in range(n_sessions):
        sha = f"{s:064x}"
        cls = int(s % 2)
        classes[sha] = cls
        for w in range(windows):
            base = rng.integers(0, vocab // 4, size=(gf, 1)) + cls * (vocab // 2)
            stretch = (np.arange(gt)[None, :] // 4 + rng.integers(0, 3, size=(gf, 1))) % (vocab // 4)
            codes = ((base + stretch) % vocab).astype(np.int16)
            noise = rng.random((gf, gt)) < 0.05
            codes[noise] = rng.integers(0, vocab, noise.sum())
            mask = np.ones((gf, gt), bool)
            if w == windows - 1:
                mask[:, gt - 3:] = False
            rows.append({"source_sha256": sha, "path": f"s{s}.edf", "window": w, "n_windows": windows,
                         "start_s": 1280.0 * w, "n_valid_frames": 1280, "codes": codes.reshape(-1).tolist(),
                         "token_mask": mask.reshape(-1).tolist(), "grid_freq": gf, "grid_time": gt, "tokenizer": "fake"})
    out.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema=TOKENS_SCHEMA).write_parquet(out / "tokens-00000.parquet")
    (out / "manifest.json").write_text(json.dumps({"schema": "clef.tokens/1", "weights_sha256": "fake", "grid": list(grid),
                                                   "n_codes": vocab, "window_s": 1280.0, "checkpoint": ""}))
    (out / "classes.json").write_text(json.dumps(classes))
    return out


# -- the VQGAN micro model and a tiny archive of generated EDF files -------------------------

ARCHIVE_FS = 200.0

#: A very small model for fast tests: 8 × 16 tokens per 1280 s window (freq /16, time /80).
MICRO = {
    "name": "micro",
    "model": {"patch": [8, 16], "channels": [8, 8], "num_res_blocks": [0, 1], "down": [[2, 5]],
              "attn_mid": False, "z_dim": 4, "norm_groups": 4},
    "quantizer": {"n_codes": 32, "dim": 4, "decay": 0.8, "kmeans_iters": 3, "usage_window": 5},
    "discriminator": {"ndf": 4, "n_layers": 1, "start_step": 4},
    "optim": {"lr": 3e-3, "warmup_steps": 0},
    "data": {"batch_size": 2, "num_workers": 0},
    "train": {"max_steps": 6, "checkpoint_every": 3, "log_every": 2},
}


def micro_config(**train: int) -> VQGANConfig:
    """The micro configuration, with ``train`` overrides."""
    data = json.loads(json.dumps(MICRO))
    data["train"].update(train)
    return VQGANConfig.model_validate(data)


def _rhythm_eeg(seconds: float, *, peak_hz: float, seed: int, left_slow: bool = False) -> np.ndarray:
    """(19, n) µV: a rhythm at ``peak_hz`` with a posterior maximum, noise, optional left-sided delta."""
    rng = np.random.default_rng(seed)
    n = int(seconds * ARCHIVE_FS)
    t = np.arange(n) / ARCHIVE_FS
    post = np.array([0.3 if c.startswith(("Fp", "F")) else 1.0 for c in CANONICAL_CHANNELS])
    x = 20 * post[:, None] * np.sin(2 * np.pi * peak_hz * t + rng.uniform(0, 6, (19, 1)))
    x += rng.normal(0, 4, (19, n))
    if left_slow:
        left = np.array([c[-1] in "1357" for c in CANONICAL_CHANNELS])
        x[left] += 40 * np.sin(2 * np.pi * 1.5 * t)
    return x


def write_archive(root: Path, durations: tuple[float, ...] = (300.0, 1280.0, 1500.0), *, missing: bool = True) -> list[Path]:
    """A tiny archive: one EDF per duration with different spectral content (and one with 2 electrodes missing)."""
    root.mkdir(parents=True, exist_ok=True)
    peaks = (10.0, 6.0, 18.0, 9.0)
    paths = []
    for k, seconds in enumerate(durations):
        x = _rhythm_eeg(seconds, peak_hz=peaks[k % len(peaks)], seed=k, left_slow=k == 1)
        sigs = [EDFSignal(f"EEG {c}-REF", x[i], ARCHIVE_FS) for i, c in enumerate(CANONICAL_CHANNELS)
                if not (missing and k == 0 and c in ("Fz", "Pz"))]
        sub = root / ("site_a" if k % 2 else "site_b")
        sub.mkdir(exist_ok=True)
        paths.append(write_edf(sub / f"session_{k}.{'EDF' if k == 2 else 'edf'}", sigs))
    return paths


# -- services: archives copied from a hospital, synthetic embedding stores ------------------

def make_archive(hospital: Path, out: Path, n: int, *, bad: bool = True, duplicate: bool = True) -> Path:
    """Copy ``n`` sessions of the hospital (:func:`clef.synthetic.hospital.subset_hospital`), plus broken files.

    Broken files: ``edf/S09/P999/notes.edf`` (text, not EDF) and ``edf/S09/P999/cut.edf``
    (a header cut short). ``zz/again.EDF`` holds the bytes of the first session (found after it: paths are sorted).
    """
    first = subset_hospital(hospital, out, n)[0]
    if bad:
        (out / "edf/S09/P999").mkdir(parents=True)
        (out / "edf/S09/P999/notes.edf").write_text("this is a text file, not a recording\n")
        (out / "edf/S09/P999/cut.edf").write_bytes(first.read_bytes()[:300])
    if duplicate:
        (out / "zz").mkdir()
        shutil.copy2(first, out / "zz/again.EDF")
    return out


def synthetic_store(path: Path, n: int = 3000, dim: int = 32, *, seed: int = 0, model_id: str = "m" * 16,
                    n_sites: int = 5, n_patients: int | None = None, part: int = 1000) -> dict[str, np.ndarray]:
    """A store of clustered random embeddings with metadata (no model needed).

    Returns the arrays written: ``vectors``, ``sites``, ``ages`` (NaN = unknown), ``patients``, ``ids``.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    x = (centres[rng.integers(0, 20, n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)
    sites = np.array([f"S{i:02d}" for i in rng.integers(1, n_sites + 1, n)])
    ages = np.round(rng.uniform(0, 95, n), 2)
    ages[rng.random(n) < 0.05] = np.nan
    patients = rng.integers(0, n_patients or max(1, n // 3), n)
    ids = np.array([f"sess{i:05d}" for i in range(n)])
    from services.store_writer import StoreWriter, utc_now

    with StoreWriter(path, path / "archive") as w:
        for a in range(0, n, part):
            man, ses, emb = [], [], []
            for i in range(a, min(n, a + part)):
                sha = f"{i:064x}"
                man.append({"path": f"x/{ids[i]}.edf", "sha256": sha, "size": 1, "status": "done", "error_kind": None,
                            "error": None, "seconds": 0.1, "updated": utc_now(), "model_id": model_id, "mtime_ns": 0})
                ses.append({"session_id": ids[i], "source_sha256": sha, "path": f"x/{ids[i]}.edf", "format": "EDF+C",
                            "duration_s": 600.0, "n_windows": 1, "sex": "FM"[i % 2],
                            "age_years": None if np.isnan(ages[i]) else float(ages[i]),
                            "patient_hash": f"p{patients[i]:06d}", "site": str(sites[i]), "setting": "routine"})
                emb.append({"session_id": ids[i], "source_sha256": sha, "model_id": model_id,
                            "vector": x[i].tolist(), "window_vectors": [x[i].tolist()], "n_windows": 1})
            w.commit(man, ses, emb, models={model_id: {"dim": dim, "checkpoint": "synthetic"}})
    return {"vectors": x, "sites": sites, "ages": ages, "patients": patients, "ids": ids}


# -- benchmark: a FHIR-and-reports-only archive, embedding stores, suites --------------------
#
# The archive is the synthetic hospital's population written without EEG: FHIR bundles,
# ``sessions.csv`` and reports (written from the planted findings, as the hospital's report
# writer does from the simulator's summary), plus ``truth.parquet``. Building it takes about
# a second, so the cohort, generator, matching and CLI tests need no EDF file.

N_PATIENTS = 90
SEED = 11


def build_fhir_archive(out: Path, n_patients: int = N_PATIENTS, seed: int = SEED) -> Path:
    """Write the archive into ``out`` (once: a marker file makes later calls free)."""
    marker = out / ".complete"
    if marker.is_file():
        return out
    from clef.synthetic.fhir import population_bundles
    from clef.synthetic.hospital import session_relpath
    from clef.synthetic.population import generate_population
    from clef.synthetic.reports import write_report
    from clef.synthetic.spec import EEGSummary, StateSpan

    pop = generate_population(n_patients, seed)
    (out / "fhir").mkdir(parents=True, exist_ok=True)
    (out / "reports").mkdir(exist_ok=True)
    for bundle in population_bundles(pop):
        pid = bundle["id"].removesuffix("-bundle")
        (out / "fhir" / f"{pid}.json").write_text(json.dumps(bundle), encoding="utf-8")
    patients = {p.patient_id: p for p in pop.patients}
    rows = []
    for s in pop.sessions:
        p = patients[s.patient_id]
        summary = EEGSummary(pdr_hz=9.5, states=(StateSpan(0.0, s.duration_s, "awake"),), events=(),
                             findings=s.findings)
        report = write_report(s, p, summary, np.random.default_rng(s.seed), pop.config)
        (out / "reports" / f"{s.session_id}.txt").write_text(report.text, encoding="utf-8")
        rows.append({"session_id": s.session_id, "patient_id": s.patient_id, "encounter_id": s.encounter_id,
                     "path": session_relpath(s), "site": s.site, "setting": s.setting, "start": s.start.isoformat(),
                     "age_years": float(s.age_years), "sex": p.sex, "condition_codes": list(s.condition_codes),
                     "atc_codes": list(s.atc_codes), "finding_names": sorted({f.name for f in s.findings}),
                     "report_asserted": list(report.asserted),
                     # the hospital's truth columns the oracle reads (benchmark_tasks.baselines.oracle)
                     "findings": [{"name": f.name, "severity": float(f.severity), "side": f.side, "cause": f.cause}
                                  for f in s.findings],
                     "pdr_hz": summary.pdr_hz,
                     "states": [{"start_s": st.start_s, "stop_s": st.stop_s, "state": st.state}
                                for st in summary.states],
                     "n_ieds": 0, "n_seizures": 0})
    with open(out / "sessions.csv", "w", newline="") as f:
        w = csv.writer(f)
        cols = ("session_id", "patient_id", "encounter_id", "path", "site", "setting", "start")
        w.writerow(cols)
        for r in rows:
            w.writerow([r[c] for c in cols])
    pl.DataFrame(rows).write_parquet(out / "truth.parquet")
    marker.write_text("ok")
    return out


def write_store(root: Path, session_ids: list[str], vectors: np.ndarray, model_id: str = "m0", part: int = 0) -> Path:
    """Write ``STORE/embeddings/part-NNNNN.parquet`` as the services' batch embedder does."""
    d = root / "embeddings"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"part-{part:05d}.parquet"
    pl.DataFrame({"session_id": session_ids, "source_sha256": ["0" * 64] * len(session_ids),
                  "model_id": [model_id] * len(session_ids),
                  "vector": [np.asarray(v, np.float32) for v in vectors],
                  "n_windows": [1] * len(session_ids)},
                 schema={"session_id": pl.String, "source_sha256": pl.String, "model_id": pl.String,
                         "vector": pl.List(pl.Float32), "n_windows": pl.Int64}).write_parquet(path)
    return path


def planted_vectors(cohort: pl.DataFrame, signal: dict[str, float], dim: int = 16, seed: int = 0,
                    column: str = "findings") -> np.ndarray:
    """Noise vectors with a shift along one axis per listed finding / group present in ``column``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(cohort.height, dim))
    for k, (name, strength) in enumerate(signal.items()):
        has = np.array([name in (v or []) for v in cohort[column].to_list()])
        x[has, k % dim] += strength
    return x


_COHORTS: dict[Path, pl.DataFrame] = {}


def cohort_of(archive: Path) -> pl.DataFrame:
    """The cohort table of an archive, built once per test process."""
    if archive not in _COHORTS:
        from benchmark_tasks.cohort import build_cohort

        _COHORTS[archive] = build_cohort(archive)
    return _COHORTS[archive]


_SUITES: dict[tuple[Path, int], Path] = {}


def small_suite(archive: Path, out_dir: Path, min_positives: int = 10) -> Path:
    """A suite of the FHIR-only archive: curated groups and findings only (generated once per test process)."""
    key = (archive, min_positives)
    if key not in _SUITES:
        from benchmark_tasks.config import GeneratorConfig, SuiteConfig
        from benchmark_tasks.suite import generate_suite

        cfg = SuiteConfig(generator=GeneratorConfig(min_positives=min_positives, min_positive_patients=4,
                                                    icd_categories=False, atc_level=None))
        generate_suite(archive, out_dir / "small.yaml", config=cfg, cohort=cohort_of(archive))
        _SUITES[key] = out_dir / "small.yaml"
    return _SUITES[key]


def copy_suite(src: Path, dst: Path) -> Path:
    """Copy a suite YAML and its table folder."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst / src.name)
    shutil.copytree(src.parent / src.stem, dst / src.stem)
    return dst / src.name
