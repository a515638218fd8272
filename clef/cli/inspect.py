"""``clef inspect``: what a file holds and how it maps onto the contract."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from clef.cli import CHANNEL_MAP_HELP, app, err, load_channel_map
from tokenizer import ChannelMap, IngestError, Recording, SignalContract, read_recording
from tokenizer.channels import SCHEMES

log = logging.getLogger(__name__)
out = Console()


def inspect_file(path: Path, contract: SignalContract,
                 channel_map: ChannelMap | None = None, *, strict: bool = False) -> tuple[dict, Recording | None]:
    """Read one file (with a site's ``channel_map``); return its JSON record and the recording (None on failure).

    A file read but too short for one spectrogram window is ``ok: false`` (``too_short``)
    with its record kept; the mains frequency found in the raw signal is reported and
    compared with the contract's notch (:func:`clef.audit.recording_checks`).
    """
    try:
        rec = read_recording(path, contract, channel_map=channel_map, strict=strict)
    except IngestError as exc:
        return {"path": str(path), "ok": False, "error": str(exc), "error_kind": exc.kind, "format": None,
                "duration_s": None, "sfreq_in": None, "channels": None, "annotations": None,
                "deid": None, "warnings": []}, None
    from clef.audit import recording_checks

    summary = rec.summary()
    mains, notes, problem = recording_checks(rec, contract)
    summary["mains"] = mains.to_dict()
    summary["warnings"] = list(summary["warnings"]) + notes
    if problem is not None:
        summary.update(ok=False, error=str(problem), error_kind=problem.kind)
    return summary, rec


def _print_human(rec: dict) -> None:
    if not rec["ok"]:
        err.print(f"[bold red]error:[/] {rec['error']}", highlight=False, soft_wrap=True)
        return
    ch = rec["channels"]
    d = rec["deid"]
    out.rule(f"[bold]{rec['path']}")
    out.print(f"format [bold]{rec['format']}[/]  duration {rec['duration_s']:.1f} s "
              f"(recorded {rec['recorded_s']:.1f} s)  EEG rate {rec['sfreq_in']:g} Hz → {rec['sfreq_out']:g} Hz  "
              f"annotations {rec['annotations']}  segments {len(rec['segments'])}")
    out.print(f"de-identified: sex={d['sex']} age={d['age_years']} patient_hash={d['patient_hash']}")
    mains = (rec.get("mains") or {}).get("detected_hz")
    out.print(f"mains in the signal: {f'{mains:g} Hz' if mains else 'none'}"
              + (f"  [yellow]lost tail {rec['truncated_tail_s']:g} s[/]" if rec.get("truncated_tail_s") else ""))
    t = Table(box=None, show_header=False, pad_edge=False)
    items = [f"[bold]{c}[/] ← {src} [dim]{rec['units'].get(c, '')}[/]" for c, src in ch["mapped"].items()]
    for row in range(0, len(items), 4):
        t.add_row(*items[row : row + 4])
    out.print(f"mapped {len(items)} of {len(items) + len(ch['missing'])} canonical channels:")
    out.print(t)
    if ch["missing"]:
        out.print(f"[yellow]missing (masked):[/] {', '.join(ch['missing'])}")
    counts = rec.get("reference_counts") or {}
    scheme = rec.get("reference", "unknown")
    out.print(f"reference: [bold]{scheme}[/] ({SCHEMES.get(scheme, 'a shared scalp electrode')}"
              + (f": {', '.join(f'{s} {n}' for s, n in counts.items())})" if len(counts) > 1 else ")"),
              highlight=False)
    if ch.get("aliases"):
        out.print(f"channel map applied to {len(ch['aliases'])}: "
                  + "; ".join(f"{k} → {v}" for k, v in ch["aliases"].items()), highlight=False)
    if ch["excluded"]:
        out.print(f"excluded ({len(ch['excluded'])}): " + "; ".join(f"{k} [dim]({v})[/]" for k, v in ch["excluded_reasons"].items()))
    for w in rec["warnings"]:
        out.print(f"[yellow]warning:[/] {w}", highlight=False)


@app.command()
def inspect(
    files: list[Path] = typer.Argument(..., help="EDF/EDF+/BDF/BDF+ files."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line and per file."),
    plot: Path | None = typer.Option(None, "--plot", help="PNG of a 10 s clinical page, plus NAME_spectrogram.png with the whole-session spectrogram (NAME_<stem>... when several files)."),
    start: float = typer.Option(0.0, "--start", help="Start of the plotted page (s)."),
    notch: float = typer.Option(60.0, "--notch", help="Mains frequency for the notch (50 or 60 Hz)."),
    channel_map: Path | None = typer.Option(None, "--channel-map", help=CHANNEL_MAP_HELP),
    strict: bool = typer.Option(False, "--strict", help="Refuse a file cut short inside its data (a crashed or "
                                                        "half-copied recording) instead of reading its complete "
                                                        "records."),
) -> None:
    """Show format, channel mapping, reference, units, annotations, de-identified facts and problems."""
    aliases = load_channel_map(channel_map)
    contract = SignalContract(filters={"notch_freq": notch})
    failed = 0
    for f in files:
        rec, recording = inspect_file(f, contract, aliases, strict=strict)
        if as_json:
            print(json.dumps(rec), flush=True)
            if not rec["ok"]:
                err.print(f"[bold red]error:[/] {rec['error']}", highlight=False, soft_wrap=True)
        else:
            _print_human(rec)
        if not rec["ok"]:
            failed += 1
            continue
        if plot is not None and recording is not None:
            from clef.viz import plot_page, plot_recording_spectrogram

            target = plot if len(files) == 1 else plot.with_name(f"{plot.stem}_{f.stem}{plot.suffix or '.png'}")
            plot_page(recording, target, start_s=start)
            spec_png = target.with_name(f"{target.stem}_spectrogram.png")
            try:
                plot_recording_spectrogram(recording, spec_png)
            except IngestError as exc:  # shorter than one taper window
                err.print(f"[yellow]warning:[/] no spectrogram for {f}: {exc.message}")
                spec_png = None
            if not as_json:
                out.print(f"plot: {target}" + (f", {spec_png}" if spec_png else ""))
    if failed:
        raise typer.Exit(1)
