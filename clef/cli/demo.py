"""``clef demo``: the whole platform on built-in synthetic data, end to end."""

from __future__ import annotations

import inspect
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from clef.cli import app, quiet_training_logs

log = logging.getLogger(__name__)
console = Console(record=True)
#: (stage title, start time) of the current run, for the results page.
_STAGES: list[tuple[str, float]] = []


@dataclass(frozen=True)
class DemoSize:
    """How large a demo run is: the hospital and the training budgets of each stage.

    Attributes
    ----------
    patients : int
        Patients of the synthetic hospital (1-4 sessions each).
    minutes_range : tuple of float, optional
        Redraw every session's duration in this range (minutes); None keeps the
        population model's realistic spread.
    tokenizer_config : str
        VQGAN preset (``clinical``: keeps the PDR and slowing; ``tiny``: seconds, for
        smoke tests).
    tokenizer_steps : int, optional
        VQGAN steps (None: the preset's).
    pretrain_steps : int
        Masked-token pretraining steps of the session transformer.
    session_overrides : dict
        Overrides of the ``tiny`` session-transformer preset.
    align_steps : int
        Contrastive alignment (stage 2) steps.
    quick : bool
        Passed to the later stages' demo steps that accept it (smaller suites, fewer
        bootstrap resamples).
    """

    patients: int = 40
    minutes_range: tuple[float, float] | None = None
    tokenizer_config: str = "clinical"
    tokenizer_steps: int | None = None
    pretrain_steps: int = 200
    session_overrides: dict[str, Any] | None = None
    align_steps: int = 100
    quick: bool = False


#: The demo as documented: a 40-patient hospital (its run time: README, "Two commands").
FULL_DEMO = DemoSize(session_overrides={"train": {"batch_size": 8}})
#: ``clef demo --quick``: every stage and output, a handful of steps each (a smoke test).
QUICK_DEMO = DemoSize(patients=16, minutes_range=(2.0, 4.0), tokenizer_config="tiny", tokenizer_steps=8, pretrain_steps=10,
                      session_overrides={"model": {"dim": 64, "depth": 2, "heads": 4}, "train": {"batch_size": 8},
                                         "optim": {"warmup_steps": 2}},
                      align_steps=6, quick=True)


def _stage(title: str) -> float:
    console.rule(f"[bold cyan]{title}")
    t = time.perf_counter()
    _STAGES.append((title, t))
    return t


def write_results_page(out: Path, total_s: float) -> Path:
    """Write ``OUT/README.md`` (what the demo did, stage times, every figure) and ``OUT/demo_log.html``.

    The page links the figures and reports the demo wrote (relative paths, so the folder
    can be moved or zipped), includes the section each later step left in
    ``OUT/<step>/section.md`` (:data:`SECTION_FILE`), and the HTML is the demo's console
    transcript.
    """
    end = time.perf_counter()
    lines = ["# CLEF demo results", "",
             "Everything here was produced by `clef demo` from a synthetic hospital (simulated EEG, fake PHI in the "
             "inputs only). The figures show the pipeline at work on a small hospital; they are not a measurement "
             "of clinical performance.", "",
             f"Total time: {total_s / 60:.1f} min. Console transcript: [demo_log.html](demo_log.html).", "",
             "| stage | minutes |", "|---|---|"]
    for i, (title, t) in enumerate(_STAGES):
        t_next = _STAGES[i + 1][1] if i + 1 < len(_STAGES) else end
        lines.append(f"| {title} | {(t_next - t) / 60:.1f} |")
    sections = [("Benchmark report", out / "benchmark" / "results" / "report.md"),
                ("Ingestion details (one JSON line per file)", out / "inspect.jsonl"),
                ("Session embeddings (Parquet)", out / "embeddings.parquet"),
                ("Embedding store and FAISS index", out / "store")]
    lines += ["", "## Outputs", ""]
    lines += [f"- {what}: [{p.relative_to(out)}]({p.relative_to(out).as_posix()})" for what, p in sections if p.exists()]
    for name, _ in LATER_STEPS:  # what a later step has to say, in the order the steps ran
        section = out / name / SECTION_FILE
        if section.is_file():
            lines += ["", section.read_text(encoding="utf-8").strip()]
    for title, folder in (("Figures", out / "plots"), ("Benchmark figures", out / "benchmark" / "results" / "plots")):
        pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if pngs:
            lines += ["", f"## {title}", ""]
            lines += [f"### {p.stem}\n\n![{p.stem}]({p.relative_to(out).as_posix()})\n" for p in pngs]
    page = out / "README.md"
    page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    console.save_html(str(out / "demo_log.html"), clear=False)
    return page


def demo_ingest(out: Path) -> list[dict]:
    """Write awkward vendor-style files, inspect each (JSON lines + a clinical page plot)."""
    from clef.cli.inspect import inspect_file
    from clef.synthetic.awkward import write_awkward_examples
    from clef.viz import plot_page
    from tokenizer import SignalContract

    files = write_awkward_examples(out / "awkward")
    records = []
    contract = SignalContract()
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for f in files:
        rec, recording = inspect_file(f, contract)
        records.append(rec)
        if recording is not None:
            plot_page(recording, out / "plots" / f"page_{f.stem}.png", start_s=0.0)
            console.print(f"[green]ok[/]    {f.name}: {rec['format']}, {rec['sfreq_in']:g} Hz → 200 Hz, "
                          f"{len(rec['channels']['mapped'])}/19 channels, {len(rec['warnings'])} warning(s)")
        else:
            console.print(f"[yellow]refused[/] {f.name}: {rec['error'].split(': ', 1)[-1]}")
    (out / "inspect.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def demo_hospital(out: Path, patients: int = 40, seed: int = 0,
                  minutes_range: tuple[float, float] | None = None) -> Path:
    """Synthesise the demo hospital and inspect one file per site (with a page plot)."""
    from clef.cli.inspect import inspect_file
    from clef.cli.synth import run_synth
    from clef.synthetic.hospital import load_truth
    from clef.viz import plot_page
    from tokenizer import SignalContract

    hosp = out / "hospital"
    s = run_synth(hosp, patients, seed, minutes_range, None, overwrite=True)
    console.print(f"{s.n_sessions} sessions of {s.n_patients} patients, {s.hours_of_eeg:.1f} h of EEG, "
                  f"in {s.seconds:.1f} s → {hosp}")
    truth = load_truth(hosp)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for site in sorted(set(truth["site"])):
        row = truth.filter(truth["site"] == site).row(0, named=True)
        rec, recording = inspect_file(hosp / row["path"], SignalContract())
        if recording is None:
            console.print(f"[red]failed[/] {row['path']}: {rec['error']}")
            continue
        plot_page(recording, out / "plots" / f"hospital_{site}_{row['session_id']}.png", start_s=60.0)
        ch = rec["channels"]
        console.print(f"{site}: {row['path']}  {rec['format']} {rec['sfreq_in']:g} Hz, "
                      f"Fp1 ← '{ch['mapped'].get('Fp1')}', missing {ch['missing'] or 'none'}, "
                      f"excluded {len(ch['excluded'])}, de-identified {rec['deid']}")
    return hosp


def reconstruction_example(truth: "object") -> dict:
    """The session the reconstruction figure shows: an adult with a PDR, awake and drowsy, with slowing if any.

    Preference order: focal slowing, then any other slowing finding, then no finding;
    among those, the longest awake time (the PDR) with some drowsiness (intermittent
    theta/delta); the first session of the truth table when none qualifies.
    """
    rows = list(truth.iter_rows(named=True))  # type: ignore[attr-defined]

    def awake_s(r: dict, state: str = "awake") -> float:
        return sum(s["stop_s"] - s["start_s"] for s in r["states"] if s["state"] == state)

    def rank(r: dict) -> tuple:
        names = set(r["finding_names"])
        slowing = 2 if "focal_slowing" in names else 1 if names & {"mild_slowing", "generalized_slowing"} else 0
        return (slowing, awake_s(r, "drowsy") > 0, awake_s(r))

    ok = [r for r in rows if r["pdr_hz"] is not None and r["age_years"] >= 18 and awake_s(r) > 0]
    return max(ok, key=rank) if ok else rows[0]


def demo_train(out: Path, hosp: Path, size: DemoSize = FULL_DEMO) -> "object":
    """Train the tokenizer, show a reconstruction, tokenize, pretrain, embed the hospital."""
    import numpy as np
    import polars as pl
    import torch

    from clef.embedding import Embedder
    from clef.synthetic.hospital import load_truth
    from clef.viz import plot_session_spectrogram
    from clef.workflow import train_all
    from tokenizer.spectrogram_cache import SpectrogramCache
    from tokenizer.vqgan.evaluate import evaluate_reconstruction
    from tokenizer.vqgan.model import VQGAN

    torch.set_num_threads(1)
    runs = out / "runs"
    t0 = time.perf_counter()
    # the tiny presets, with a lighter pretraining so the whole demo stays within minutes
    from clef.config import SessionConfig
    from tokenizer.presets import load_preset

    light = load_preset(SessionConfig, "tiny", size.session_overrides or {})
    trained = train_all(hosp / "edf", runs, cache_dir=runs / "cache", tokenizer_config=size.tokenizer_config,
                        session_config=light, tokenizer_steps=size.tokenizer_steps, pretrain_steps=size.pretrain_steps,
                        on_stage=lambda s: console.print(f"[cyan]{s}[/] ({time.perf_counter() - t0:.0f} s)"))
    model = VQGAN.from_checkpoint(str(trained.tokenizer))
    truth = load_truth(hosp)
    cache = SpectrogramCache(runs / "cache", model.ctx.contract)
    row = reconstruction_example(truth)
    spec, _ = cache.load_or_compute(hosp / row["path"])
    rep, (recon,) = evaluate_reconstruction(model, [spec])
    awake = np.zeros(spec.n_frames, bool)
    for st in row["states"]:
        if st["state"] == "awake":
            awake[int(st["start_s"]):int(st["stop_s"])] = True
    findings = ", ".join(row["finding_names"]) or "no finding"
    png = plot_session_spectrogram(spec.values, np.asarray(model.ctx.freqs), spec.frame_mask, spec.channel_mask,
                                   model.ctx.contract.channels, out / "plots" / f"tokenizer_reconstruction_{row['session_id']}.png",
                                   reconstruction=recon, fmax=20.0, spectrum_frames=awake if awake.any() else None,
                                   title=f"{row['session_id']} ({findings}; PDR {row['pdr_hz']} Hz): original vs "
                                         f"'{model.config.name}' tokenizer reconstruction")
    console.print(f"tokenizer '{model.config.name}': {model.ctx.n_tokens} tokens per 1280 s window; reconstruction error "
                  "per bin and 1-s frame " + ", ".join(f"{b} {v:.1f} dB" for b, v in rep.band_error_db.items()) + f" → {png}")
    p = trained.pretrain
    console.print(f"tokens: {trained.tokenize.tokenized} sessions tokenized; session transformer "
                  f"{p.parameters / 1e6:.2f}M parameters, held-out masked-token accuracy "
                  f"{(p.val_masked_acc or 0):.3f} vs {p.baseline_acc:.3f} for the most common code")
    emb = Embedder(trained.checkpoint, cache_dir=runs / "cache")
    embs = emb.embed([hosp / r for r in truth["path"]])
    table = pl.DataFrame({"session_id": truth["session_id"], "source_sha256": [e.source_sha256 for e in embs],
                          "n_windows": [e.n_windows for e in embs], "model_id": [e.model_id for e in embs],
                          "vector": [e.vector.tolist() for e in embs]})
    table.write_parquet(out / "embeddings.parquet")
    console.print(f"embedded {len(embs)} sessions ({sum(e.n_windows for e in embs)} windows) → {out / 'embeddings.parquet'} "
                  f"({time.perf_counter() - t0:.0f} s for this stage)")
    return trained


def demo_align(out: Path, hosp: Path, trained: "object", steps: int = 100) -> "object":
    """Stage 2: align the pretrained encoder with the hospital's reports and FHIR records."""
    from clef.align import AlignConfig, index_archive
    from clef.align.train import align
    from reports import process_report, read_report
    from tokenizer.presets import load_preset

    t0 = time.perf_counter()
    index = index_archive(hosp)
    example = next(s for s in index.sessions.values() if s.report is not None)
    processed = process_report(read_report(example.report))
    present = [f"{m.name}{'(' + m.side + ')' if m.side else ''}" for m in processed.findings if m.status == "present"]
    console.print(f"report {example.session_id}: {len(processed.scrubbed)} characters after PHI scrubbing; "
                  f"findings present: {', '.join(present) or 'none'}")
    console.print(f"  summary: {processed.summary[:300]}")
    cfg = load_preset(AlignConfig, "tiny", {"train": {"batch_size": 16}})
    r = align(trained.checkpoint, index, cfg, out / "runs" / "aligned", tokens=trained.tokens,  # type: ignore[attr-defined]
              max_steps=steps, trainer_kwargs={"enable_progress_bar": False})
    st, ret = r.stats, r.retrieval
    console.print(f"aligned {st['sessions']} sessions ({st['with_report']} with a report, {st['with_ehr']} with an "
                  f"EHR; EHR vocabulary {st['vocab_size']}) for {r.steps} steps in {time.perf_counter() - t0:.0f} s")
    for name in ("report", "ehr"):
        if f"{name}_top10" in ret:
            console.print(f"held-out patients, EEG → {name}: top-10 accuracy {ret[name + '_top10']:.2f} "
                          f"(chance {ret[name + '_chance10']:.2f}, n = {int(ret[name + '_n'])})")
    if ret.get("report_n", 0) < 50:
        console.print("[dim](a few held-out sessions of a small demo hospital: these figures are noisy; "
                      "python bench/align.py measures them on 71 held-out sessions of 200 patients)[/]")
    return r


DEMO_STEPS_GROUP = "clef.demo_steps"

#: The later stages' demo steps in the order they run, as (entry-point name, title): the
#: benchmark probes the aligned checkpoint first, then the services embed, index and search;
#: the trend and the explanation score with the benchmark's probes (the explanation's
#: examples come from the services' store).
LATER_STEPS: tuple[tuple[str, str], ...] = (
    ("benchmark", "benchmark: generate the hospital's task suite, probe aligned vs recon-only vs baselines"),
    ("services", "services: embed the hospital into a store, index it, search"),
    ("trend", "trend: an hour of ICU EEG with burst suppression from a known time, scored by the demo's probes"),
    ("explain", "explain: where one positive session's probe score comes from, with its nearest stored sessions"),
)
#: A later step's part of the results page: Markdown it leaves in ``OUT/<step name>/``,
#: its links relative to ``OUT`` (the page's folder).
SECTION_FILE = "section.md"


def demo_later_stages(out: Path, hosp: Path, checkpoint: Path, quick: bool = False) -> None:
    """Run the demo steps of later stages (:data:`LATER_STEPS`), found through entry points.

    Those packages import ``clef``, never the reverse (ARCHITECTURE.md, "Packages and
    layers"); each entry point of ``clef.demo_steps`` names a
    ``step(hospital, checkpoint, out, console)`` function, which may also take a keyword
    ``quick`` (``clef demo --quick``: a tiny hospital, keep the step small and do not fail
    for want of data). A step may leave its part of the results page in
    ``OUT/<name>/section.md`` (:data:`SECTION_FILE`). A step whose package is not installed
    is skipped with a note.
    """
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group=DEMO_STEPS_GROUP)}
    for n, (name, title) in enumerate(LATER_STEPS, 5):
        _stage(f"{n}. {title}")
        if name not in found:
            console.print(f"[yellow]skipped: no '{name}' entry point in {DEMO_STEPS_GROUP} (package not installed?)[/]")
            continue
        step = found[name].load()
        kwargs = {"quick": True} if quick and "quick" in inspect.signature(step).parameters else {}
        step(hosp, checkpoint, out, console, **kwargs)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for everything the demo writes."),
    quick: bool = typer.Option(False, "--quick", help="A 16-patient hospital of short sessions and a few training "
                                                      "steps per stage (~2-3 min): every stage and output file, "
                                                      "no meaningful figures."),
) -> None:
    """Run the platform end to end on built-in synthetic data and write a results folder."""
    size = QUICK_DEMO if quick else FULL_DEMO
    quiet_training_logs()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    _STAGES.clear()
    _stage("1. Synthetic hospital: EDF archive + FHIR EHR + reports with known truth")
    demo_hospital(out, size.patients, minutes_range=size.minutes_range)
    t0 = _stage("2. Ingestion: awkward hospital exports → canonical recordings")
    records = demo_ingest(out)
    ok = sum(r["ok"] for r in records)
    console.print(f"{ok} of {len(records)} files ingested, {len(records) - ok} refused with a clear error "
                  f"({time.perf_counter() - t0:.1f} s); details in {out / 'inspect.jsonl'}, pages in {out / 'plots'}")
    _stage("3. Tokenizer + session transformer: train tiny models on the hospital, embed every session")
    trained = demo_train(out, out / "hospital", size)
    _stage("4. Clinical grounding: reports + FHIR EHR, contrastive alignment (stage 2)")
    aligned = demo_align(out, out / "hospital", trained, steps=size.align_steps)
    demo_later_stages(out, out / "hospital", aligned.checkpoint, quick=size.quick)  # type: ignore[attr-defined]
    console.rule("[bold green]demo finished")
    total = time.perf_counter() - t_start
    console.print(f"demo finished in {total / 60:.1f} min; results page {(out / 'README.md').resolve()} "
                  f"(figures, benchmark report, store), console transcript {out / 'demo_log.html'}")
    write_results_page(out, total)
