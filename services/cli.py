"""``clef embed``, ``clef index``, ``clef search`` and ``clef serve`` (a ``clef.cli_plugins`` entry point).

``clef`` may not import ``services`` (ARCHITECTURE.md, "Packages and layers"), so these
commands register themselves through :func:`register`, which ``clef.cli.main`` calls at
start-up. Heavy imports (torch, faiss, ray, fastapi) happen inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import typer

from services.config import EmbedConfig, IndexConfig, ServeConfig


def _fail(message: str) -> None:
    from clef.cli import fail

    fail(message)


def _guard(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; expected errors become one line on stderr and exit code 2 (tracebacks with --debug)."""
    import logging

    from clef.embedding import CheckpointError

    from services.auth import ApiKeyError
    from services.batch import EmbedError
    from services.ray_engine import RayUnavailableError
    from services.search import FilterError
    from services.store import StoreError

    try:
        return fn()
    except (StoreError, FileNotFoundError, FilterError, ApiKeyError, RayUnavailableError, CheckpointError, EmbedError,
            NotADirectoryError, ValueError, KeyError) as exc:
        if logging.getLogger().level <= logging.DEBUG:  # clef --debug
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        _fail(" ".join(str(msg).split()))


def embed(
    archive: Path = typer.Argument(..., help="Archive root: EDF/BDF files are found recursively."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Session-transformer checkpoint directory."),
    store: Path = typer.Option(..., "--store", help="Embedding store folder (created when absent)."),
    workers: int = typer.Option(1, "--workers", min=1,
                                help="Worker processes, one core each (local: a process pool; Ray: CPU workers)."),
    engine: str = typer.Option("local", "--engine", help="local (process pool) or ray."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Try again files whose last attempt failed."),
    part_size: int = typer.Option(64, "--part-size", min=1, help="Files per committed Parquet part."),
    device: str = typer.Option("cpu", "--device", help="Torch device (local engine)."),
    cache: Path | None = typer.Option(None, "--cache", help="Spectrogram cache folder (off by default)."),
    site_level: int | None = typer.Option(None, "--site-level", min=0,
                                          help="Site = this folder level of the path (0 = first) when "
                                               "sessions.csv gives none."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster address (default: RAY_ADDRESS "
                                                                       "or a new local instance)."),
    model_workers: int | None = typer.Option(None, "--model-workers", min=1,
                                             help="Ray: session-model workers, one GPU each (default: one per "
                                                  "GPU, or --workers on a CPU-only cluster)."),
    anonymous_ids: bool = typer.Option(False, "--anonymous-ids",
                                       help="Store salted hashes (CLEF_DEID_SALT) instead of session ids and paths, "
                                            "so file and folder names reach no table, search result or response."),
    channel_map: Path | None = typer.Option(None, "--channel-map",
                                            help="A site's channel aliases: CSV 'label,site' (or YAML/JSON "
                                                 "'label: site'); a site is one of the 19 10-20 sites or 'exclude'. "
                                                 "Checked before any file is read."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar with ETA."),
) -> None:
    """Embed every EDF/BDF file of an archive into a Parquet store (resumable, idempotent)."""
    from clef.cli import err

    if engine not in ("local", "ray"):
        _fail(f"--engine must be local or ray, found {engine!r}")
    cfg = EmbedConfig(engine=engine, workers=workers, retry_failed=retry_failed, part_size=part_size,  # type: ignore[arg-type]
                      device=device, cache_dir=cache, site_level=site_level, ray_address=ray_address,
                      model_workers=model_workers, anonymous_ids=anonymous_ids, channel_map=channel_map)

    def run() -> Any:
        from services.batch import embed_archive

        return embed_archive(archive, checkpoint, store, cfg, progress=progress and sys.stderr.isatty())

    s = _guard(run)
    if as_json:
        print(json.dumps(s.to_dict()))
    err.print(f"{s.files} files: {s.embedded} embedded, {s.known} already stored (same content), {s.unchanged} "
              f"unchanged, {s.failed} failed" + (f", {s.failed_skipped} failed before (use --retry-failed)"
                                                 if s.failed_skipped else "")
              + f"; {s.seconds:.1f} s ({s.sessions_per_min:.1f} sessions/min) → {store}", highlight=False)


def index(
    store: Path = typer.Argument(..., help="Embedding store folder."),
    kind: str = typer.Option("auto", "--kind", help="auto (flat up to 50k sessions, IVF above), flat, ivf or hnsw."),
    model: str | None = typer.Option(None, "--model", help="Model id (default: the store's only model)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild from scratch."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Build or update the FAISS index (cosine) of a store's session embeddings."""
    from clef.cli import err

    def run() -> Any:
        from services.index import KINDS, ensure_index

        if kind not in KINDS:
            raise ValueError(f"--kind must be one of {', '.join(KINDS)}, found {kind!r}")
        return ensure_index(store, model, kind, IndexConfig(), rebuild=rebuild)  # type: ignore[arg-type]

    ci, action = _guard(run)
    if as_json:
        print(json.dumps({"action": action, "kind": ci.kind, "model_id": ci.model_id, "n": ci.n, "dim": ci.dim,
                          "store_digest": ci.digest, "params": ci.params}))
    err.print(f"index {action}: {ci.kind}, {ci.n} sessions, dim {ci.dim}, model {ci.model_id}"
              + (f", {ci.params}" if ci.params else ""), highlight=False)


def search(
    store: Path = typer.Argument(..., help="Embedding store folder."),
    session: str | None = typer.Option(None, "--session", help="Query: a stored session id."),
    edf: Path | None = typer.Option(None, "--edf", help="Query: an EDF/BDF file (needs --checkpoint)."),
    text: str | None = typer.Option(None, "--text", help="Query: words, e.g. \"left temporal slowing\" (needs "
                                                         "--checkpoint, an aligned one: its report tower places "
                                                         "the words among the sessions' EEG)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Checkpoint to embed --edf or --text with "
                                                                      "(the model that embedded the store)."),
    k: int = typer.Option(50, "-k", "--k", min=1, help="Neighbours to return."),
    filters: list[str] = typer.Option([], "--filter", help="KEY=VALUE (site=S01[,S02], sex=F, setting=emu, "
                                                           "age=40-60, reference=LE); repeatable, combined with "
                                                           "AND."),
    reference: str | None = typer.Option(None, "--reference",
                                         help="Only sessions recorded against this reference (REF, LE, AVG, MAST, "
                                              "EAR, CZ, bipolar, unknown, mixed; several comma-separated): the "
                                              "same as --filter reference=..."),
    channel_map: Path | None = typer.Option(None, "--channel-map", help="Channel aliases to read --edf with (as "
                                                                        "given to 'clef embed')."),
    per_patient: bool = typer.Option(False, "--per-patient", help="At most one session per patient (the query's "
                                                                  "patient excluded)."),
    model: str | None = typer.Option(None, "--model", help="Model id (default: the store's only model, or the "
                                                           "checkpoint's)."),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Sessions most similar to a stored session, an EDF file or words (``--text``), with filters."""
    from clef.cli import err

    if sum(q is not None for q in (session, edf, text)) != 1:
        _fail("give exactly one query: --session ID, --edf FILE or --text WORDS")
    if edf is not None and checkpoint is None:
        _fail("--edf needs --checkpoint (the model that embedded the store)")
    if text is not None and checkpoint is None:
        _fail("--text needs --checkpoint (the aligned checkpoint that embedded the store)")
    if text is not None and channel_map is not None:
        _fail("--channel-map applies to --edf only")

    def run() -> Any:
        from services.search import CohortSearcher, parse_filters

        fs = parse_filters([*filters, *([f"reference={reference}"] if reference is not None else [])])
        if text is not None:
            from services.text_search import TextSearcher, check_query

            check_query(text)
            ts = TextSearcher(store, checkpoint)  # type: ignore[arg-type]
            if model is not None and model != ts.model_id:
                raise ValueError(f"--model {model} differs from the checkpoint's model {ts.model_id}")
            return ts.sessions, ts.search(text, k, fs, per_patient=per_patient)
        if session is not None:
            s = CohortSearcher(store, model)
            return s, s.search_session(session, k, fs, per_patient=per_patient)
        from clef.embedding import Embedder
        from tokenizer.channels import ChannelMap
        from tokenizer.errors import IngestError

        aliases = ChannelMap.load(channel_map) if channel_map is not None else None
        emb_model = Embedder(checkpoint, channel_map=aliases)  # type: ignore[arg-type]
        if model is not None and model != emb_model.model_id:
            raise ValueError(f"--model {model} differs from the checkpoint's model {emb_model.model_id}")
        s = CohortSearcher(store, emb_model.model_id)
        try:
            rec, tokens = emb_model.read_tokens(edf)  # type: ignore[arg-type]
        except IngestError as exc:
            raise ValueError(str(exc)) from None
        e = emb_model.embed(tokens)
        row = s.row_of_sha(e.source_sha256)
        # a stored file's patient is the store's (sessions.csv / FHIR first), else the header's
        patient = s.meta["patient_hash"][row] if row is not None else rec.facts.patient_hash
        return s, s.search(e.vector, k, fs, per_patient=per_patient, exclude_rows=[row] if row is not None else [],
                           exclude_patient=patient if per_patient else None)

    searcher, found = _guard(run)
    if searcher.index_action != "loaded":
        err.print(f"index {searcher.index_action}: {searcher.index.kind}, {searcher.index.n} sessions", highlight=False)
    rows = [{k_: v for k_, v in n.to_dict().items() if k_ != "path"} for n in found]
    if as_json:
        print(json.dumps({"query": session or text or str(edf), "model_id": searcher.model_id, "k": k,
                          "filters": filters, **({"space": "report"} if text is not None else {}),
                          "per_patient": per_patient, "neighbours": rows}))
        return
    from rich.console import Console
    from rich.table import Table

    what = f"the words {text!r} (cosine in the report space)" if text is not None else session or edf
    t = Table(title=f"{len(found)} nearest to {what}", title_justify="left")
    for col in ("#", "session", "cosine", "distance", "site", "setting", "sex", "age", "reference", "windows",
                "patient"):
        t.add_column(col, justify="right" if col in ("#", "cosine", "distance", "age", "windows") else "left")
    for n in found:
        t.add_row(str(n.rank), n.session_id, f"{n.score:.4f}", f"{n.distance:.4f}", n.site or "", n.setting or "",
                  n.sex or "", "" if n.age_years is None else f"{n.age_years:.0f}", n.reference or "",
                  str(n.n_windows or ""), n.patient_hash or "")
    Console().print(t)
    if len(found) < k:
        err.print(f"{len(found)} of {k} found: no more sessions pass the filters", highlight=False)


def serve(
    store: Path = typer.Argument(..., help="Embedding store folder."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint for uploads (its model must be stored)."),
    probes: Path | None = typer.Option(None, "--probes", help="Benchmark results folder with probes/<task>.json."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port."),
    api_keys: Path | None = typer.Option(None, "--api-keys", help="File of API keys, one per line (else "
                                                                  "CLEF_API_KEYS, comma-separated)."),
    max_upload_mb: float = typer.Option(512.0, "--max-upload-mb", min=0.001, help="Largest upload accepted."),
    device: str = typer.Option("cpu", "--device", help="Torch device for uploads."),
    reload_seconds: float = typer.Option(10.0, "--reload-seconds", min=0,
                                         help="Check at most this often whether the store grew or its index was "
                                              "rebuilt, and load the change in the background (0: never)."),
    reports: Path | None = typer.Option(None, "--reports", help="Folder of <session_id>.txt reports whose findings "
                                                                "the explorer shows (default: reports/ beside the "
                                                                "store's archive)."),
    warm_explorer: bool = typer.Option(True, "--warm-explorer/--no-warm-explorer",
                                       help="At start, pay the explorer's first drawing's costs, then draw the "
                                            "stored sessions' spectrograms in the background (low priority)."),
) -> None:
    """HTTP service: embeddings, task probabilities and similar sessions (FastAPI; docs at /docs)."""
    from clef.cli import err

    cfg = ServeConfig(store=store, checkpoint=checkpoint, probes=probes, api_keys_file=api_keys,
                      max_upload_mb=max_upload_mb, device=device, reload_seconds=reload_seconds, reports=reports,
                      warm_explorer=warm_explorer)

    def run() -> Any:
        from services.api import create_app
        from services.auth import load_api_keys

        return create_app(cfg, load_api_keys(cfg.api_keys_file))

    app = _guard(run)
    import uvicorn

    err.print(f"serving {store} on http://{host}:{port} (docs at /docs)", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)


def register(app: typer.Typer) -> None:
    """Add ``embed``, ``index``, ``search`` and ``serve`` to the ``clef`` command line."""
    app.command("embed")(embed)
    app.command("index")(index)
    app.command("search")(search)
    app.command("serve")(serve)
    from services.explain import register as register_explain  # clef explain: its own module

    register_explain(app)
