"""``clef train tokenizer`` and ``clef tokenize``: train the VQGAN on an archive, turn an archive into tokens.

torch and Lightning are imported inside the commands, so other ``clef`` commands start fast.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from clef.cli import CHANNEL_MAP_HELP, app, err, fail, load_channel_map, quiet_training_logs
from tokenizer import SignalContract

log = logging.getLogger(__name__)
out_console = Console()

#: ``clef train ...``: one sub-command per trainable model.
train_app = typer.Typer(no_args_is_help=True, help="Train the platform's models on your archive.")
app.add_typer(train_app, name="train")


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[note]}"), console=err, transient=False)


def _devices(value: str) -> int | str | list[int]:
    """``auto``, ``-1``, ``2`` or ``0,1`` as Lightning expects them."""
    if value == "auto":
        return value
    try:
        if "," in value:
            return [int(v) for v in value.split(",") if v.strip()]
        return int(value)
    except ValueError:
        fail(f"--devices: expected auto, a number or a comma-separated list of indices, found {value!r}")
        raise  # unreachable


@train_app.command("tokenizer")
def train_tokenizer_cmd(
    archive: Path = typer.Option(..., "--archive", help="Folder searched recursively for EDF/BDF files."),
    config: str = typer.Option("tiny", "--config", help="tiny, base (tokenizer/configs) or a YAML file."),
    out: Path = typer.Option(..., "--out", help="Checkpoint directory (always the latest state)."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Total generator steps (default: config)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    accelerator: str = typer.Option("auto", "--accelerator", help="Lightning accelerator: auto, cpu, gpu, cuda, mps."),
    devices: str = typer.Option("auto", "--devices", help="Lightning devices: auto, N, -1 or 0,1."),
    precision: str | None = typer.Option(None, "--precision", help="Lightning precision, e.g. 32 or bf16-mixed."),
    num_nodes: int = typer.Option(1, "--num-nodes", min=1, help="Lightning num_nodes."),
    strategy: str = typer.Option("auto", "--strategy", help="Lightning strategy (auto, ddp, ...)."),
    cache: Path | None = typer.Option(None, "--cache", help="Spectrogram cache (default $CLEF_HOME/cache/spectrograms)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Override data.batch_size."),
    num_workers: int | None = typer.Option(None, "--num-workers", min=0, help="Override data.num_workers."),
    log_dir: Path | None = typer.Option(None, "--log-dir", help="CSV metrics folder (default <out>.logs)."),
    notch: float = typer.Option(60.0, "--notch", help="Mains frequency of the archive (50 or 60 Hz)."),
) -> None:
    """Train the VQGAN tokenizer on an archive (checkpoints in our safetensors format)."""
    quiet_training_logs()
    from tokenizer.checkpoint_io import CheckpointError
    from tokenizer.spectrogram_cache import find_recordings
    from tokenizer.presets import load_preset
    from tokenizer.vqgan.config import VQGANConfig
    from tokenizer.vqgan.training import train_tokenizer

    try:
        cfg = load_preset(VQGANConfig, config)
        files = find_recordings(archive)
    except (FileNotFoundError, ValidationError) as exc:
        fail(str(exc))
        return
    if not files:
        fail(f"archive {archive}: no *.edf or *.bdf file found")
    data = {k: v for k, v in (("batch_size", batch_size), ("num_workers", num_workers)) if v is not None}
    if data:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update=data)})
    trainer_kwargs: dict[str, object] = {"accelerator": accelerator, "devices": _devices(devices),
                                         "num_nodes": num_nodes, "strategy": strategy}
    if precision is not None:
        trainer_kwargs["precision"] = precision
    for name in ("lightning.pytorch", "lightning.fabric"):  # Lightning prints its own lines; do not repeat them
        logging.getLogger(name).propagate = False
    progress = _progress()
    task = progress.add_task("spectrograms", total=len(files), note="")
    progress.start()

    def on_file(res: object) -> None:
        progress.update(task, advance=1, note=("cached" if getattr(res, "hit", False) else
                                               "error" if getattr(res, "error", None) else "computed"))
        if progress.tasks[0].finished:
            progress.stop()  # Lightning's own progress bar takes over

    try:
        result = train_tokenizer(archive, cfg, out, contract=SignalContract(filters={"notch_freq": notch}),
                                 cache_dir=cache, max_steps=max_steps, resume=resume, log_dir=log_dir,
                                 on_file=on_file, **trainer_kwargs)
    except (FileExistsError, CheckpointError, ValueError) as exc:
        fail(str(exc))
        return
    finally:
        progress.stop()
    out_console.print(f"checkpoint: {result}")


@app.command("tokenize")
def tokenize_cmd(
    archive: Path = typer.Option(..., "--archive", help="Folder searched recursively for EDF/BDF files."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="VQGAN checkpoint directory."),
    out: Path = typer.Option(..., "--out", help="Folder of tokens-*.parquet parts (resumable)."),
    cache: Path | None = typer.Option(None, "--cache", help="Spectrogram cache (default $CLEF_HOME/cache/spectrograms)."),
    part_size: int = typer.Option(64, "--part-size", min=1, help="Files per Parquet part."),
    device: str = typer.Option("cpu", "--device", help="Torch device of the encoder (cpu, cuda, cuda:1 ...)."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Windows encoded together."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Retry files that failed in an earlier run."),
    channel_map: Path | None = typer.Option(None, "--channel-map", help=CHANNEL_MAP_HELP),
) -> None:
    """Turn every recording of an archive into VQGAN tokens (one Parquet row per file and window)."""
    from tokenizer.checkpoint_io import CheckpointError
    from tokenizer.tokens import tokenize_archive

    aliases = load_channel_map(channel_map)

    with _progress() as progress:
        task = progress.add_task("tokenize", total=None, note="")
        counts = {"tokenized": 0, "skipped": 0, "error": 0}

        def on_start(n: int) -> None:
            progress.update(task, total=n)

        def on_file(path: str, status: str) -> None:
            counts[status] += 1
            progress.update(task, advance=1, note=f"{counts['tokenized']} new, {counts['skipped']} skipped, "
                                                  f"{counts['error']} errors")

        try:
            summary = tokenize_archive(archive, checkpoint, out, cache_dir=cache, part_size=part_size, device=device,
                                       batch_size=batch_size, retry_errors=retry_errors, on_file=on_file,
                                       on_start=on_start, channel_map=aliases)
        except (FileNotFoundError, CheckpointError, ValueError) as exc:
            fail(str(exc))
            return
    out_console.print(f"{summary.tokenized} file(s) tokenized ({summary.windows} windows), {summary.skipped} skipped "
                      f"(already done), {summary.errors} error(s); tokens in {out}")
    if summary.errors:
        err.print(f"[yellow]warning:[/] {summary.errors} file(s) could not be tokenized; see {out}/errors-*.parquet",
                  highlight=False)
