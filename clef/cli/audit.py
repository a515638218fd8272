"""``clef audit``: one table for a whole archive (formats, rates, labels, references,
montages, what will be embedded and why the rest will not)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from clef.cli import app, fail

out = Console()


@app.command()
def audit(
    archive: Path = typer.Argument(..., help="Archive folder: EDF/BDF files are found recursively."),
    data: bool = typer.Option(False, "--data", help="Read every file's signal too (flat/railed channels, EDF+D "
                                                    "segments, mains frequency); default: headers only."),
    strict: bool = typer.Option(False, "--strict", help="Refuse files cut short instead of reading their "
                                                        "complete records."),
    notch: float = typer.Option(60.0, "--notch", help="Contract notch (50 or 60 Hz) the mains is compared with."),
    as_json: bool = typer.Option(False, "--json", help="The audit as JSON on stdout (with one row per file)."),
    markdown: bool = typer.Option(False, "--markdown", help="The audit as a Markdown table on stdout."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Threads (default 8 for headers, 1 with "
                                                                       "--data)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
) -> None:
    """Audit an archive: what it holds, what will be embedded and why the rest will not."""
    from clef.audit import audit_archive
    from tokenizer import SignalContract

    if as_json and markdown:
        fail("give at most one of --json and --markdown")
    from tokenizer.spectrogram_cache import find_recordings, require_archive_dir

    try:
        require_archive_dir(archive)
    except FileNotFoundError as exc:
        fail(str(exc))
    contract = SignalContract(filters={"notch_freq": notch})
    columns = (TextColumn("audit"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn(), TextColumn("{task.fields[stats]}"))
    total = len(find_recordings(archive))
    with Progress(*columns, console=Console(stderr=True), disable=not progress, transient=True) as bar:
        task = bar.add_task("audit", total=total, stats="")
        seen = {"ok": 0, "no": 0}

        def step(fa) -> None:  # noqa: ANN001 - FileAudit
            seen["ok" if fa.ok else "no"] += 1
            bar.update(task, advance=1, stats=f"{seen['ok']} to embed, {seen['no']} not")

        result = audit_archive(archive, contract, data=data, strict=strict, threads=threads, on_file=step)
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    if markdown:
        print(result.to_markdown(), end="")
        return
    t = Table(title=f"{archive}: {len(result.files)} files, {result.n_ok} will be embedded "
                    f"({'headers only' if result.mode == 'headers' else 'headers and data'}, {result.seconds:.2f} s)",
              title_justify="left")
    for col, just in (("", "left"), ("value", "left"), ("files", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for dim, values in result.counts().items():
        for k, (value, count) in enumerate(values.items()):
            t.add_row(dim if k == 0 else "", str(value), str(count), end_section=k == len(values) - 1)
    out.print(t)
    for kind, r in result.reasons().items():
        out.print(f"[yellow]{kind}[/] ({r['files']}): {r['example']}", highlight=False, soft_wrap=True)
