"""The Ray engine of ``clef embed --engine ray``: Ray Data pipelines, no home-made scheduler.

Per chunk of files, one streaming Ray dataset::

    from_items(files) ─► map_batches(_Prepare)  CPU actors ×workers: hash, header, read,
                                                spectrogram, tokens
                      ─► map_batches(_Finish)   model actors ×model_workers: session
                                                transformer (one GPU each when the cluster has
                                                GPUs; default one per GPU, else ×workers)
                      ─► iter_rows() on the driver, which alone writes the store

Ray's streaming executor provides the back-pressure between the stages. Results cross
stages as pickled :class:`~services.worker.FileResult` bytes (token grids are ragged).
Connects to ``EmbedConfig.ray_address`` (or ``RAY_ADDRESS``), else starts a local instance
with ``workers + model_workers`` CPUs (logical: actors of both stages, which alternate on
the cores), and shuts down only an instance it started.
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from services.config import EmbedConfig, load_channel_map
from services.discovery import ArchiveFile
from services.worker import FileEmbedder, FileResult

if TYPE_CHECKING:
    from tokenizer.channels import ChannelMap

log = logging.getLogger(__name__)


class RayUnavailableError(RuntimeError):
    """Ray is not installed or cannot start here."""


class _Prepare:
    """CPU stage (a Ray actor): hash, header, read + spectrogram + tokens."""

    def __init__(self, checkpoint: str, known: frozenset[str], batch_size: int, cache_dir: str | None,
                 channel_map: ChannelMap | None = None) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.fe = FileEmbedder(checkpoint, device="cpu", batch_size=batch_size, cache_dir=cache_dir,
                               channel_map=channel_map)
        self.known = known

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = [pickle.dumps(self.fe.prepare(pickle.loads(item), self.known)) for item in batch["item"]]
        return {"result": np.array(out, dtype=object)}


class _Finish:
    """Model stage (a Ray actor, on a GPU when given one): the session transformer."""

    def __init__(self, checkpoint: str, device: str, batch_size: int) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.fe = FileEmbedder(checkpoint, device=device, batch_size=batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [pickle.loads(b) for b in batch["result"]]
        done = self.fe.finish(results)
        return {"result": np.array([pickle.dumps(r) for r in done], dtype=object)}


def init_ray(cfg: EmbedConfig) -> bool:
    """Connect to or start Ray; returns True when this call started it.

    Raises
    ------
    RayUnavailableError
        Ray is not installed, or could not start / connect.
    """
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(f"--engine ray needs the 'ray[data]' package, not importable here ({exc})") from None
    if ray.is_initialized():
        return False
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS")
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
                          "configure_logging": False}
    if not address:
        kw["num_cpus"] = cfg.workers + (cfg.model_workers or cfg.workers)
    try:
        ray.init(address=address, **kw)
    except Exception as exc:  # noqa: BLE001 - any start failure is reported in one line
        raise RayUnavailableError(f"Ray could not start ({'address ' + address if address else 'local instance'}): "
                                  f"{' '.join(str(exc).split())}") from None
    return True


def run_ray(items: list[ArchiveFile], checkpoint: str, cfg: EmbedConfig, known: frozenset[str]) -> Iterator[FileResult | None]:
    """Process ``items`` on Ray; yields results as they complete.

    Parameters
    ----------
    items : list of ArchiveFile
    checkpoint : str
        Checkpoint path, readable from every Ray node.
    cfg : EmbedConfig
    known : frozenset of str
        Content hashes not to embed (already in the store).
    """
    if not items:
        return
    started = init_ray(cfg)
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver shows one bar for the whole run
        ctx.print_on_execution_start = False
        gpus = int(ray.cluster_resources().get("GPU", 0))
        device = "cuda" if gpus else "cpu"
        n_model = cfg.model_workers or gpus or cfg.workers
        model_batch = cfg.model_batch_files or (4 if gpus else 1)
        model_res: dict[str, float] = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        cache = str(cfg.cache_dir) if cfg.cache_dir else None
        channel_map = load_channel_map(cfg)
        log.info("ray: %d CPU worker(s) for read + spectrogram + tokens, %d model worker(s) on %s",
                 cfg.workers, n_model, device)
        for a in range(0, len(items), cfg.ray_chunk):
            chunk = items[a:a + cfg.ray_chunk]
            ds = ray.data.from_items([{"item": pickle.dumps(i)} for i in chunk], override_num_blocks=len(chunk))
            ds = ds.map_batches(_Prepare, batch_size=1, num_cpus=1, compute=ActorPoolStrategy(size=cfg.workers),
                                fn_constructor_kwargs={"checkpoint": checkpoint, "known": known,
                                                       "batch_size": cfg.batch_size, "cache_dir": cache,
                                                       "channel_map": channel_map})
            ds = ds.map_batches(_Finish, batch_size=model_batch,
                                compute=ActorPoolStrategy(size=n_model),
                                fn_constructor_kwargs={"checkpoint": checkpoint, "device": device,
                                                       "batch_size": cfg.batch_size}, **model_res)
            for row in ds.iter_rows():
                yield pickle.loads(row["result"])
    finally:
        if started:
            ray.shutdown()
