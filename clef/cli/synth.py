"""``clef synth``: write a synthetic hospital (EDF archive + FHIR EHR + reports + hidden truth)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from clef.cli import app, err, fail


def run_synth(out: Path, patients: int, seed: int, minutes_range: tuple[float, float] | None,
              workers: int | None, overwrite: bool = False, quiet: bool = False):
    """Synthesise a hospital with a progress bar; returns the HospitalSummary."""
    from clef.synthetic.hospital import HospitalConfig, synthesize_hospital

    cfg = HospitalConfig(minutes_range=minutes_range)
    with Progress(TextColumn("[bold]synth[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("sessions"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err, disable=quiet, transient=False) as bar:
        task = bar.add_task("synth", total=None)
        return synthesize_hospital(out, patients, seed=seed, config=cfg, workers=workers, overwrite=overwrite,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Output folder (must be empty or absent)."),
    patients: int = typer.Option(50, "--patients", min=1, help="Number of patients (1-4 sessions each)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed: same seed, same hospital."),
    minutes_range: tuple[float, float] = typer.Option((0.0, 0.0), "--minutes-range",
                                                      help="Redraw session durations uniformly in [A, B] minutes (default: the population model's realistic spread)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Parallel processes (0 = all cores)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder."),
) -> None:
    """Write a synthetic hospital: EDF+ files in several vendor styles, FHIR R4 bundles,
    neurologist reports, sessions.csv, and the hidden truth (truth.parquet)."""
    mr = None if minutes_range == (0.0, 0.0) else minutes_range
    if mr is not None and not (0 < mr[0] <= mr[1]):
        fail(f"--minutes-range expects 0 < A <= B, found {mr[0]} {mr[1]}")
    try:
        s = run_synth(out, patients, seed, mr, workers or None, overwrite)
    except FileExistsError as exc:
        fail(str(exc))
    err.print(f"wrote {s.n_sessions} sessions of {s.n_patients} patients ({s.hours_of_eeg:.1f} h of EEG) "
              f"to {s.out} in {s.seconds:.1f} s")
