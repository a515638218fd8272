"""``clef align`` (stage 2: contrastive alignment with reports and EHR)."""

from __future__ import annotations

from pathlib import Path

import typer

from clef.cli import app, err, fail, quiet_training_logs

_LAYOUT = """Archive layout: sessions.csv (optional: session_id, path[, patient_id, start, report]),
EDF/BDF files anywhere below, reports/<session_id>.txt, fhir/ (FHIR R4 Bundle JSON or NDJSON).
Without sessions.csv, sessions are the EDF/BDF files (id = file stem) and FHIR Procedures
with the session id as identifier give the patient and date."""


@app.command(help=f"Stage-2 contrastive alignment of a pretrained session transformer with reports and EHR.\n\n{_LAYOUT}")
def align(
    init: Path = typer.Option(..., "--init", help="Stage-1 checkpoint ('clef pretrain'), with its tokenizer."),
    archive: Path = typer.Option(..., "--archive", help="Archive root (EDF, reports/, fhir/, sessions.csv)."),
    config: str = typer.Option("tiny", "--config", help="Alignment preset (tiny, base) or a YAML file."),
    out: Path = typer.Option(..., "--out", help="Aligned checkpoint directory."),
    tokens: Path | None = typer.Option(None, "--tokens", help="Tokens of the archive (default: tokenize into <out>_tokens)."),
    held_out: list[str] = typer.Option([], "--held-out", help="Code or prefix removed from the EHR vocabulary "
                                                               "(repeatable), e.g. icd:G40 or atc:N03A."),
    max_steps: int = typer.Option(0, "--max-steps", min=0, help="Override train.max_steps (0 = config)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    cache: Path | None = typer.Option(None, "--cache", help="Spectrogram cache used when tokenizing."),
    accelerator: str = typer.Option("auto", "--accelerator", help="Lightning accelerator (cpu, gpu, auto)."),
    devices: str = typer.Option("auto", "--devices", help="Lightning devices: auto, N, -1 or 0,1."),
    precision: str = typer.Option("", "--precision", help="Lightning precision, e.g. bf16-mixed."),
    num_nodes: int = typer.Option(1, "--num-nodes", min=1, help="Lightning nodes (multi-node)."),
) -> None:
    from clef.align.config import AlignConfig
    from clef.align.train import align as run
    from clef.cli.pretrain import _trainer_kwargs
    from clef.cli.tokenizer import _progress
    from tokenizer.checkpoint_io import CheckpointError
    from tokenizer.presets import load_preset

    quiet_training_logs()
    try:
        overrides = {"ehr": {"held_out": list(held_out)}} if held_out else None
        cfg = load_preset(AlignConfig, config, overrides)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
        return
    if resume and not (out / "align" / "meta.json").is_file():
        fail(f"--resume: no aligned checkpoint in {out}")
    if not archive.is_dir():
        fail(f"--archive {archive}: expected a folder")
    with _progress() as progress:
        task = progress.add_task("tokenize", total=None, note="")

        def on_start(n: int) -> None:
            progress.update(task, total=n)

        def on_file(path: str, status: str) -> None:
            progress.update(task, advance=1)

        try:
            r = run(init, archive, cfg, out, tokens=tokens, max_steps=max_steps or None, resume=resume, cache_dir=cache,
                    trainer_kwargs=_trainer_kwargs(accelerator, devices, precision or None, num_nodes, True),
                    on_tokenize_start=on_start, on_tokenize_file=on_file)
        except (FileNotFoundError, CheckpointError, ValueError) as exc:
            fail(str(exc))
            return
    s = r.stats
    err.print(f"aligned checkpoint {r.checkpoint} at step {r.steps}: {s['sessions']} sessions "
              f"({s['with_report']} with a report, {s['with_ehr']} with an EHR), {s['train_sessions']} train / "
              f"{s['val_sessions']} held-out, EHR vocabulary {s['vocab_size']}")
    ret = r.retrieval
    for name in ("report", "ehr"):
        if f"{name}_top10" in ret:
            err.print(f"held-out EEG→{name} top-10 accuracy {ret[f'{name}_top10']:.3f} (chance "
                      f"{ret[f'{name}_chance10']:.3f}, n={int(ret[f'{name}_n'])}), top-1 {ret[f'{name}_top1']:.3f}")
