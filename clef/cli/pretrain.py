"""``clef pretrain`` (stage 1) and ``clef embed-one``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from clef.cli import app, err, fail, quiet_training_logs


def _trainer_kwargs(accelerator: str, devices: str, precision: str | None, num_nodes: int, progress: bool) -> dict:
    from clef.cli.tokenizer import _devices

    kw: dict = {"accelerator": accelerator, "devices": _devices(devices), "num_nodes": num_nodes,
                "enable_progress_bar": progress}
    if precision:
        kw["precision"] = precision
    return kw


@app.command()
def pretrain(
    tokens: Path = typer.Option(..., "--tokens", help="Tokens folder written by 'clef tokenize'."),
    config: str = typer.Option("tiny", "--config", help="Preset (tiny, base, large) or a YAML file."),
    out: Path = typer.Option(..., "--out", help="Checkpoint directory."),
    max_steps: int = typer.Option(0, "--max-steps", min=0, help="Override train.max_steps (0 = config)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    accelerator: str = typer.Option("auto", "--accelerator", help="Lightning accelerator (cpu, gpu, auto)."),
    devices: str = typer.Option("auto", "--devices", help="Lightning devices: auto, N, -1 or 0,1."),
    precision: str = typer.Option("", "--precision", help="Lightning precision, e.g. bf16-mixed."),
    num_nodes: int = typer.Option(1, "--num-nodes", min=1, help="Lightning nodes (multi-node)."),
    archive: Path | None = typer.Option(None, "--archive", help="Archive the tokens come from: the checkpoint then "
                                        "records the patients it saw (meta.json trained_on)."),
    exclude_test_patients: bool = typer.Option(False, "--exclude-test-patients",
                                               help="Leave out the sessions of the patient split's test patients "
                                                    "(needs --archive): an inductive stage 1 for the benchmark."),
) -> None:
    """Masked-token pretraining of the session transformer (stage 1)."""
    from clef.config import SessionConfig
    from clef.pretrain import pretrain as run
    from tokenizer.presets import load_preset
    quiet_training_logs()

    try:
        cfg = load_preset(SessionConfig, config)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if resume:
        from tokenizer.checkpoint_io import recover_checkpoint

        recover_checkpoint(out)  # a run killed while replacing its checkpoint left the previous one aside
    if resume and not (out / "meta.json").is_file():
        fail(f"--resume: no checkpoint in {out}")
    if exclude_test_patients and archive is None:
        fail("--exclude-test-patients needs --archive (the archive names each session's patient)")
    try:
        r = run(tokens, cfg, out, max_steps=max_steps or None, resume=resume, archive=archive,
                exclude_test_patients=exclude_test_patients,
                trainer_kwargs=_trainer_kwargs(accelerator, devices, precision or None, num_nodes, True))
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    acc = "n/a" if r.val_masked_acc is None else f"{r.val_masked_acc:.3f}"
    err.print(f"checkpoint {r.checkpoint} at step {r.steps}: {r.parameters / 1e6:.2f}M parameters, held-out masked-token "
              f"accuracy {acc} (most common code: {r.baseline_acc:.3f})")


@app.command("embed-one")
def embed_one(
    file: Path = typer.Argument(..., help="EDF/BDF file."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Session-transformer checkpoint directory."),
    out: Path | None = typer.Option(None, "--out", help="Write the session vector (.npy) here."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary (with the vector)."),
    device: str = typer.Option("cpu", "--device", help="Torch device."),
) -> None:
    """Embed one session and print a summary (optionally save the vector)."""
    from clef.embedding import Embedder
    from tokenizer.checkpoint_io import CheckpointError

    try:
        emb = Embedder(checkpoint, device=device).embed(file)
    except CheckpointError as exc:
        fail(str(exc))
    if out is not None:
        np.save(out, emb.vector)
    if as_json:
        print(json.dumps({"path": str(file), "sha256": emb.source_sha256, "model_id": emb.model_id, "dim": emb.dim,
                          "n_windows": emb.n_windows, "window_tokens": emb.window_tokens.tolist(),
                          "vector": [round(float(x), 6) for x in emb.vector]}))
    else:
        v = emb.vector
        err.print(f"{file}: {emb.n_windows} window(s), dim {emb.dim}, model {emb.model_id}, "
                  f"|v| = {np.linalg.norm(v):.3f}, first values {np.round(v[:4], 3).tolist()}"
                  + (f"; saved to {out}" if out else ""))
