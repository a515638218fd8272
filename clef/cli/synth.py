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


@app.command("synth-long")
def synth_long(
    out: Path = typer.Argument(..., help="Output folder (must be empty or absent)."),
    n: int = typer.Option(8, "--n", min=1, help="Number of recordings; their kinds cycle through --kinds."),
    hours: float = typer.Option(6.0, "--hours", help="Duration of each recording in hours (at least 10 minutes)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed: same seed, same recordings."),
    kinds: str = typer.Option("seizure_cluster,burst_suppression_onset,evolving_encephalopathy,no_change", "--kinds",
                              help="Comma-separated kinds: seizure_cluster (EMU), burst_suppression_onset (ICU), "
                                   "evolving_encephalopathy (ICU), no_change."),
    workers: int = typer.Option(0, "--workers", min=0, help="Parallel processes (0 = all cores)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder."),
) -> None:
    """Write long ICU and EMU recordings (hours) whose state changes at a known time (a seizure
    cluster, burst-suppression onset, an evolving encephalopathy) or does not, with their
    truth (truth.parquet: kind, onset_s, seizures), to check trends against."""
    from clef.synthetic.long import synthesize_long_recordings

    chosen = [k.strip() for k in kinds.split(",") if k.strip()]
    with Progress(TextColumn("[bold]synth-long[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("recordings"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False) as bar:
        task = bar.add_task("synth-long", total=n)
        try:
            s = synthesize_long_recordings(out, n, hours=hours, seed=seed, kinds=chosen, workers=workers or None,
                                           overwrite=overwrite,
                                           progress=lambda done, total: bar.update(task, completed=done))
        except (FileExistsError, ValueError) as exc:
            fail(str(exc))
    err.print(f"wrote {s.n_recordings} recordings ({s.hours_of_eeg:.1f} h of EEG) to {s.out} in {s.seconds:.1f} s")
