"""The ``clef`` command line (typer + rich).

Every subcommand reports bad input as one line on stderr and a non-zero exit, without a
traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler

from tokenizer import ChannelMap, ChannelMapError, IngestError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="CLEF: clinical session-scale EEG embeddings.")
err = Console(stderr=True)
_state = {"debug": False}


def _quiet_libraries(record: logging.LogRecord) -> bool:
    """Drop third-party training chatter below WARNING (kept with --verbose / --debug)."""
    return not (record.name.startswith(("lightning", "pytorch_lightning")) and record.levelno < logging.WARNING)


def quiet_training_logs() -> None:
    """Silence Lightning's own INFO handler (devices, tips) unless --verbose/--debug.

    Lightning installs a handler on its logger when imported, so this runs inside the
    commands that train, after the import.
    """
    if logging.getLogger().level <= logging.INFO:
        return
    import lightning.pytorch  # noqa: F401  (installs its handler)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show info logs."),
) -> None:
    _state["debug"] = debug
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler = RichHandler(console=err, show_path=False)
    if not (debug or verbose):
        # Lightning announces devices and tips at INFO (and resets its loggers' levels on
        # import); our progress bars and summaries say what matters.
        handler.addFilter(_quiet_libraries)
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)


def fail(message: str, code: int = 2) -> None:
    """Print one error line on stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


#: Help of the ``--channel-map`` option of the commands that read recordings.
CHANNEL_MAP_HELP = ("A site's channel aliases: CSV 'label,site' (or YAML/JSON 'label: site'); a site is one of the "
                    "19 10-20 sites or 'exclude'. Checked before any file is read.")


def load_channel_map(path: Path | None) -> ChannelMap | None:
    """The ``--channel-map`` file, validated now (one error line naming the file and line)."""
    if path is None:
        return None
    try:
        return ChannelMap.load(path)
    except ChannelMapError as exc:
        fail(str(exc))
        raise  # unreachable: fail exits


from clef.cli import align as _align  # noqa: E402,F401  (registers commands)
from clef.cli import audit as _audit  # noqa: E402,F401
from clef.cli import demo as _demo  # noqa: E402,F401
from clef.cli import inspect as _inspect  # noqa: E402,F401
from clef.cli import pretrain as _pretrain  # noqa: E402,F401
from clef.cli import synth as _synth  # noqa: E402,F401
from clef.cli import tokenizer as _tokenizer  # noqa: E402,F401


PLUGIN_GROUP = "clef.cli_plugins"


def load_plugins() -> list[str]:
    """Register the commands of later stages (``benchmark_tasks``, ``services``).

    Those packages import ``clef``, never the reverse (ARCHITECTURE.md, "Packages and
    layers"), so their commands are found through the ``clef.cli_plugins`` entry points of
    the installed distribution: each names a ``register(app)`` function. A plugin that fails to import is reported
    at debug level and skipped, so one broken optional dependency does not take the
    whole command line down.
    """
    from importlib.metadata import entry_points

    loaded = []
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            ep.load()(app)
            loaded.append(ep.name)
        except Exception as exc:  # pragma: no cover - depends on the environment
            logging.getLogger(__name__).debug("CLI plugin %s not loaded: %s", ep.name, exc)
    return loaded


def main() -> None:
    """Entry point of the ``clef`` console script."""
    load_plugins()
    try:
        app()
    except IngestError as exc:
        if _state["debug"]:
            raise
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
