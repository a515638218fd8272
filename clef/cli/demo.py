"""``clef demo``: the whole platform on built-in synthetic data, end to end."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import typer
from rich.console import Console

from clef.cli import app

log = logging.getLogger(__name__)
console = Console()


def _stage(title: str) -> float:
    console.rule(f"[bold cyan]{title}")
    return time.perf_counter()


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


@app.command()
def demo(out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for everything the demo writes.")) -> None:
    """Run the platform end to end on built-in synthetic data and write a results folder."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = _stage("1. Ingestion: awkward hospital exports → canonical recordings")
    records = demo_ingest(out)
    ok = sum(r["ok"] for r in records)
    console.print(f"{ok} of {len(records)} files ingested, {len(records) - ok} refused with a clear error "
                  f"({time.perf_counter() - t0:.1f} s); details in {out / 'inspect.jsonl'}, pages in {out / 'plots'}")
    console.rule("[bold green]demo finished")
    console.print(f"results: {out.resolve()}")
