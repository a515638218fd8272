"""``clef tasks generate``, ``clef benchmark run`` and ``clef trend``, registered as a ``clef.cli_plugins`` entry point.

``clef trend`` is here, not in ``clef/cli``, because ``--probes`` scores with the
benchmark's probes (:func:`benchmark_tasks.probes.load_probes`); the work is
:func:`clef.trend.trend`'s.

``clef`` may not import ``benchmark_tasks`` (ARCHITECTURE.md, "Packages and layers"); the
package's ``[project.entry-points."clef.cli_plugins"] benchmark =
"benchmark_tasks.cli:register"`` lets ``clef.cli.main`` add these commands at start-up.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from clef.embedding import Embedder
    from clef.trend import Scorer, TrendConfig

__all__ = ["register"]

log = logging.getLogger(__name__)

tasks_app = typer.Typer(no_args_is_help=True, help="Benchmark task suites: generate from an archive's EHR and reports.")
benchmark_app = typer.Typer(no_args_is_help=True, help="The phenotype probe benchmark: probe frozen embeddings.")


def register(app: typer.Typer) -> None:
    """Add the ``tasks`` and ``benchmark`` command groups and the ``trend`` command to the ``clef`` app."""
    app.add_typer(tasks_app, name="tasks")
    app.add_typer(benchmark_app, name="benchmark")
    app.command("trend")(trend)


def _fail(message: str) -> None:
    from clef.cli import fail

    fail(message)


def _name_path(text: str) -> tuple[str | None, Path]:
    """``NAME=PATH`` or ``PATH`` (a NAME has no '/'; a path containing '=' needs the NAME= form)."""
    name, sep, path = text.partition("=")
    if sep and name.strip() and "/" not in name and path.strip():
        return name.strip(), Path(path.strip())
    return None, Path(text)


@tasks_app.command("generate")
def generate(
    archive: Path = typer.Option(..., "--archive", help="Archive root (EDF, reports/, fhir/, sessions.csv)."),
    out: Path = typer.Option(..., "--out", help="Suite YAML to write; tables go to a folder of the same name."),
    name: str | None = typer.Option(None, "--name", help="Suite name (default: the file stem)."),
    version: str = typer.Option("1.0", "--version", help="Version of the suite's content."),
    description: str = typer.Option("", "--description", help="One line describing the suite."),
    min_positives: int = typer.Option(20, "--min-positives", min=2, help="Fewest matched positive sessions per task."),
    min_patients: int = typer.Option(5, "--min-patients", min=1, help="Fewest positive patients per task."),
    ratio: int = typer.Option(2, "--ratio", min=1, help="Matched controls per positive."),
    caliper: float = typer.Option(0.2, "--caliper", min=0.0, help="Caliper in SD of logit(PS); 0 = none."),
    control_exclusion: str = typer.Option("ever", "--control-exclusion",
                                          help="ever: controls' records never carry the task's codes; session: "
                                               "only not at the session."),
    salt: str = typer.Option("clef-benchmark-v1", "--salt", help="Salt of the patient-split hash (keep the default: "
                             "'clef align' trains on the same split, so no test patient is an alignment target)."),
    train: float = typer.Option(0.7, "--train", help="Fraction of patients in train."),
    val: float = typer.Option(0.0, "--val", help="Fraction of patients in val (joins training in probing)."),
    test: float = typer.Option(0.3, "--test", help="Fraction of patients in test."),
    categories: str = typer.Option("phenotype,medication,finding", "--categories", help="Comma-separated."),
    icd_categories: bool = typer.Option(True, "--icd-categories/--no-icd-categories",
                                        help="Also one task per ICD-10-CM 3-character category."),
    atc_level: int = typer.Option(4, "--atc-level", min=0, max=5, help="Also one task per ATC class of this level "
                                                                        "(0 = none)."),
    reports_: bool = typer.Option(True, "--reports/--no-reports", help="Read report findings (finding tasks)."),
) -> None:
    """Generate a versioned task suite (phenotypes, medications, EEG findings) with matched controls and splits."""
    from pydantic import ValidationError

    from benchmark_tasks.cohort import build_cohort
    from benchmark_tasks.config import GeneratorConfig, MatchingConfig, SuiteConfig
    from benchmark_tasks.suite import generate_suite
    from clef.cli import err
    from clef.patients import PatientSplit

    try:
        cfg = SuiteConfig(
            generator=GeneratorConfig(categories=tuple(c.strip() for c in categories.split(",") if c.strip()),
                                      min_positives=min_positives, min_positive_patients=min_patients,
                                      icd_categories=icd_categories, atc_level=atc_level or None),
            matching=MatchingConfig(ratio=ratio, caliper=caliper or None, control_exclusion=control_exclusion),
            splits=PatientSplit(salt=salt, train=train, val=val, test=test))
    except ValidationError as exc:
        _fail("invalid option: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        return
    if not archive.is_dir():
        _fail(f"--archive {archive}: expected an archive folder")
    try:
        cohort = build_cohort(archive, with_reports=reports_, progress=True)
        suite = generate_suite(archive, out, name=name, version=version, description=description, config=cfg,
                               cohort=cohort, progress=True)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
    counts = ", ".join(f"{sum(t.category == c for t in suite.tasks)} {c}"
                       for c in ("phenotype", "medication", "finding"))
    err.print(f"suite {suite.name} v{suite.spec.version}: {len(suite.tasks)} tasks ({counts}) from "
              f"{suite.spec.source.n_sessions} sessions of {suite.spec.source.n_patients} patients -> {out} "
              f"(+ {out.with_suffix('')}/)")


@benchmark_app.command("run")
def run(
    suite_path: Path = typer.Option(..., "--suite", help="Suite YAML ('clef tasks generate')."),
    out: Path = typer.Option(..., "--out", help="Results folder."),
    embeddings: list[str] = typer.Option([], "--embeddings", help="[NAME=]PATH of an embedding store "
                                         "(STORE/embeddings/part-*.parquet) or a Parquet file with session_id + "
                                         "vector (+ model_id); repeatable."),
    model: list[str] = typer.Option([], "--model", help="Keep only these model_id values / names of the stores "
                                    "(repeatable)."),
    checkpoint: list[str] = typer.Option([], "--checkpoint", help="NAME=PATH of a session-transformer checkpoint "
                                         "(stage 1 or aligned) to embed the suite's sessions with; repeatable."),
    bandpower: bool | None = typer.Option(None, "--bandpower/--no-bandpower", help="Band-power baseline (default: "
                                          "on when the archive's EDF files are found)."),
    random_encoder: bool | None = typer.Option(None, "--random-encoder/--no-random-encoder",
                                               help="Randomly initialised encoder baseline, built like the first "
                                                    "--checkpoint (default: on when a checkpoint is given)."),
    braindecode: list[str] = typer.Option([], "--braindecode", help="NAME=WEIGHTS of a braindecode model (labram, "
                                          "cbramod, reve) with local weights; repeatable."),
    baseline: list[str] = typer.Option([], "--baseline", help="KIND=CKPT: a rung of the information-loss ladder "
                                       "from a tokenizer (or session-transformer) checkpoint: input-bandpower, "
                                       "decoded-bandpower, codes, code-rows, or tokenizer-rungs (all four); "
                                       "repeatable."),
    oracle: Path | None = typer.Option(None, "--oracle", help="Synthetic hospital the suite was made from "
                                       "(truth.parquet; validation only): adds the oracle ceiling (its hidden truth "
                                       "as an embedding), each model's headroom, and the tasks' truth classes "
                                       "(planted / negative / other)."),
    archive: Path | None = typer.Option(None, "--archive", help="Archive root (default: the suite's)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache of band-power features and checkpoint "
                                          "embeddings (default: RESULTS_DIR/cache)."),
    spectrogram_cache: Path | None = typer.Option(None, "--spectrogram-cache", help="Spectrogram cache of the "
                                                  "checkpoints' tokenizer."),
    probe: list[str] = typer.Option([], "--probe", help="logistic and/or mlp (default both)."),
    primary_probe: str = typer.Option("mlp", "--primary-probe", help="Probe of the summary, plots and comparisons."),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Seeds of the MLP probe."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for the 95% intervals."),
    reference: str | None = typer.Option(None, "--reference", help="Baseline of the scatter plots."),
    device: str = typer.Option("cpu", "--device", help="Torch device for embedding (cpu, cuda)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes for band-power features and the tokenizer "
                                "rungs."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Draw the figures."),
    allow_unaudited: bool = typer.Option(False, "--allow-unaudited", help="Accept aligned checkpoints that record "
                                         "no training patients (made before training records); the report's "
                                         "stage-overlap audit marks them NOT audited."),
) -> None:
    """Probe frozen embeddings on every task of a suite, with baselines; write results, report, plots and probes."""
    from pydantic import ValidationError

    from benchmark_tasks.baselines.tokenizer_rungs import parse_rung_option
    from benchmark_tasks.config import ProbeConfig
    from benchmark_tasks.models import ModelSources, collect_models
    from benchmark_tasks.run import run_benchmark
    from benchmark_tasks.suite import load_suite
    from clef.cli import err

    try:
        cfg = ProbeConfig(probes=tuple(probe) if probe else ("logistic", "mlp"), primary=primary_probe, seeds=seeds,
                          n_bootstrap=bootstrap)
    except ValidationError as exc:
        _fail("invalid option: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        return
    try:
        suite = load_suite(suite_path)
        suite.verify()
    except (FileNotFoundError, ValueError) as exc:
        _fail(f"refusing to run: {exc}")
        return
    from benchmark_tasks.leakage import audit_checkpoints

    try:  # before any embedding: a checkpoint aligned on a test patient is refused at once
        audit = audit_checkpoints(suite, [_name_path(c) for c in checkpoint], archive=archive,
                                  allow_unaudited=allow_unaudited)
    except (FileNotFoundError, ValueError) as exc:
        _fail(f"refusing to run: {exc}")
        return
    try:
        sources = ModelSources(
            embeddings=[_name_path(e) for e in embeddings], models=list(model),
            checkpoints=[_name_path(c) for c in checkpoint], bandpower=bandpower,
            random_encoder=random_encoder, braindecode=list(braindecode),
            tokenizer_rungs=[parse_rung_option(b) for b in baseline])
        models = collect_models(suite, sources, archive=archive, cache_dir=cache_dir or out / "cache",
                                spectrogram_cache=spectrogram_cache, device=device, workers=workers, progress=True)
        classes = None
        if oracle is not None:
            from benchmark_tasks.baselines.oracle import oracle_embeddings
            from benchmark_tasks.truth import task_classes

            models = [*models, oracle_embeddings(oracle, suite.labels["session_id"].unique().to_list())]
            classes = task_classes(suite.tasks)
        result = run_benchmark(suite, models, out, config=cfg, reference=reference, progress=True, plots=plots,
                               task_classes=classes, stage_audit=audit)
    except (FileNotFoundError, ValueError, KeyError, ImportError) as exc:
        _fail(str(exc).strip("'\""))
        return
    s = result.summary.filter(result.summary["probe"] == cfg.primary) if result.summary.height else result.summary
    for row in s.filter(s["category"] == "overall").iter_rows(named=True) if s.height else []:
        err.print(f"{row['model']}: mean AUROC {row['mean_auroc']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}] "
                  f"over {row['n_tasks']} tasks ({cfg.primary})")
    for row in s.filter(s["category"] == "planted").iter_rows(named=True) if s.height and classes else []:
        hr = "undefined" if row["mean_headroom"] is None else f"{row['mean_headroom']:.2f}"
        err.print(f"{row['model']}: planted tasks mean AUROC {row['mean_auroc']:.3f}, headroom captured {hr} "
                  f"({row['n_headroom']} of {row['n_tasks']} tasks with a ceiling)")
    err.print(f"results -> {out}/results.parquet, report {out}/report.md, probes {out}/probes/")


def trend(
    file: Path = typer.Argument(..., help="EDF/BDF recording (hours to days)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Session-transformer checkpoint directory."),
    probes: Path | None = typer.Option(None, "--probes", help="Benchmark results folder whose probes "
                                       "(RESULTS/probes/*.json) are scored over time; probes of another checkpoint "
                                       "are refused."),
    stride: str = typer.Option("5min", "--stride", help="Time between trend points, e.g. 30s, 5min, 1h."),
    csa_step: str = typer.Option("1min", "--csa-step", help="Time per column of the CSA."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: FILE's name + '.trend' in the "
                                    "current folder)."),
    figure: bool = typer.Option(True, "--figure/--no-figure", help="Draw trend.png."),
    device: str = typer.Option("cpu", "--device", help="Torch device."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
    reuse_tokens: bool = typer.Option(False, "--reuse-tokens", help="An approximation: keep the codes of the "
                                      "previous point's window and tokenize only the newest stride (plus a margin); "
                                      "cheaper tokenizing, embeddings a little off the exact ones (README)."),
    drift: bool = typer.Option(True, "--drift/--no-drift", help="Flag slow changes too: beside the step rule, a "
                               "one-sided CUSUM of the embedding's (and each score's) distance from the patient's "
                               "baseline (README, trends); --no-drift: the step rule alone."),
    follow: bool = typer.Option(False, "--follow", help="Live mode: FILE is still being written by a recorder; "
                                "read its new records as they come and rewrite the outputs at each new stride point. "
                                "Stops after --idle-timeout without a new record, or on Ctrl-C (outputs complete)."),
    poll: str = typer.Option("0.5s", "--poll", help="With --follow: time between looks at the file."),
    idle_timeout: str = typer.Option("5min", "--idle-timeout", help="With --follow: stop after this long without "
                                     "a new record."),
    lookahead: str = typer.Option("2.5s", "--lookahead", help="With --follow: signal after a block that the "
                                  "filters see before it is used. 2.5s: a point is out about 4-5 s after the record "
                                  "completing its minute (1-s records), with the filters' edge transient (mostly "
                                  "delta); 10s or more: as the finished file (within 0.1 dB), 8 s later."),
) -> None:
    """Trend of a long recording: strided embeddings, probe scores, left/right CSA, flagged changes."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from benchmark_tasks.probes import load_probes
    from clef.cli import err
    from clef.embedding import Embedder
    from clef.trend import TrendConfig, parse_duration
    from clef.trend import trend as compute_trend
    from clef.viz import plot_trend
    from tokenizer.checkpoint_io import CheckpointError
    from tokenizer.errors import IngestError

    try:
        stride_s = parse_duration(stride)
    except ValueError as exc:
        _fail(f"--stride: {exc}")
        return
    try:
        csa_s = parse_duration(csa_step)
    except ValueError as exc:
        _fail(f"--csa-step: {exc}")
        return
    live: dict[str, float] = {}
    for name, text in (("poll", poll), ("idle-timeout", idle_timeout), ("lookahead", lookahead)):
        try:
            live[name] = parse_duration(text)
        except ValueError as exc:
            _fail(f"--{name}: {exc}")
            return
    if not file.is_file():
        _fail(f"{file}: no such file")
        return
    scorers = {}
    if probes is not None:
        scorers = load_probes(probes)
        if not scorers:
            _fail(f"--probes: no readable probe in {probes / 'probes'}")
            return
    try:
        embedder = Embedder(checkpoint, device=device)
        embedder.tokenizer  # noqa: B018  (a checkpoint without its tokenizer fails here, before any reading)
    except (CheckpointError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    folder = out if out is not None else Path(f"{file.name}.trend")
    if follow:
        _follow_trend(file, embedder, scorers, folder, figure,
                      TrendConfig(stride_s=stride_s, csa_step_s=csa_s, reuse_tokens=reuse_tokens, drift=drift), live)
        return
    columns = [TextColumn("[bold]trend[/]"), BarColumn(), TextColumn("{task.fields[done]}"), TimeElapsedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), disable=not progress, transient=True) as bar:
        task = bar.add_task("trend", total=None, done="")

        def advance(done: float, total: float) -> None:
            bar.update(task, completed=done, total=total, done=f"{done / 3600:.1f} of {total / 3600:.1f} h")

        try:
            result = compute_trend(file, embedder, probes=scorers, stride_s=stride_s,
                                   config=TrendConfig(csa_step_s=csa_s, reuse_tokens=reuse_tokens, drift=drift),
                                   progress=advance)
        except (IngestError, ValueError) as exc:
            _fail(str(exc))
            return
    written = result.write(folder)
    if figure:
        written["figure"] = plot_trend(result, folder / "trend.png")
    n_emb = sum(c.signal == "embedding" for c in result.changes)
    err.print(f"{file.name}: {result.n_points} points every {result.config.stride_s:g} s over "
              f"{result.duration_s / 3600:.2f} h, {len(result.scores)} probe(s), {n_emb} embedding change(s), "
              f"{len(result.changes) - n_emb} score change(s) -> {folder}/ "
              f"({', '.join(p.name for p in written.values())})", highlight=False)


def _follow_trend(file: Path, embedder: Embedder, scorers: dict[str, Scorer], folder: Path, figure: bool,
                  config: TrendConfig, live: dict[str, float]) -> None:
    """``clef trend --follow``: :func:`clef.trend.follow_trend`, a line per update, Ctrl-C stops it cleanly."""
    import signal

    from clef.cli import err
    from clef.trend import TrendResult, follow_trend
    from tokenizer.errors import IngestError

    stopping: list[bool] = []

    def interrupt(signum: int, frame: object) -> None:
        # the first Ctrl-C stops following at the next poll (the outputs are then completed);
        # a second one interrupts at once
        stopping.append(True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        err.print("stopping: the last records are being read and the outputs completed (Ctrl-C again to abort)")

    def show(r: TrendResult) -> None:
        last = f"{r.t_s[-1] / 3600:.2f} h" if r.n_points else "none yet"
        err.print(f"{file.name}: {r.n_points} points (last {last}), {len(r.changes)} change(s) -> {folder}/",
                  highlight=False)

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        result = follow_trend(file, embedder, out=folder, probes=scorers, stride_s=config.stride_s, config=config,
                              poll_s=live["poll"],
                              idle_timeout_s=live["idle-timeout"], lookahead_s=live["lookahead"],
                              stop=lambda: bool(stopping), figure=figure, on_update=show)
    except (IngestError, ValueError) as exc:
        _fail(str(exc))
        return
    finally:
        signal.signal(signal.SIGINT, previous)
    why = "stopped" if stopping else f"no new record for {live['idle-timeout']:g} s"
    err.print(f"{file.name}: {why}; {result.n_points} points every {result.config.stride_s:g} s over "
              f"{result.duration_s / 3600:.2f} h -> {folder}/", highlight=False)
