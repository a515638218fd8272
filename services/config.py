"""Configurations of the services (pydantic, ``extra="forbid"``: a typo is an error)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

if TYPE_CHECKING:
    from tokenizer.channels import ChannelMap


class EmbedConfig(BaseModel):
    """How ``clef embed`` runs (:func:`services.batch.embed_archive`).

    Attributes
    ----------
    engine : {"local", "ray"}
        Local process pool, or Ray (a local instance, or ``ray_address``).
    workers : int
        Worker processes, one core each (parallelism is processes: each runs one thread).
        Local: the pool's processes. Ray: CPU workers for read + spectrogram + tokens.
    model_workers : int, optional
        Ray only: session-model workers, one GPU each when the cluster has GPUs; default:
        one per GPU, or ``workers`` on a CPU-only cluster (where the session model is the
        larger half of a file's cost, so the model stage must scale with the readers).
    retry_failed : bool
        Try again files whose last attempt failed (otherwise they are skipped).
    part_size : int
        Files per committed Parquet part.
    flush_seconds : float
        Commit pending results at least this often (a kill loses at most this much work).
    device : str
        Torch device of the local engine (``cpu``, ``cuda``).
    batch_size : int
        Windows per forward pass.
    model_batch_files : int, optional
        Ray only: files per session-model call; default 4 on GPUs (fuller batches), 1 on
        CPU (no gain from batching there, and each file reaches the store sooner).
    cache_dir : Path, optional
        Spectrogram cache (off by default: an archive's spectrograms are large).
    site_level : int, optional
        Site from this directory level of the relative path when ``sessions.csv`` has none.
    ray_address : str, optional
        Ray cluster address (``auto``, ``ray://host:10001``); default: ``RAY_ADDRESS`` or a
        new local instance.
    ray_chunk : int
        Ray only: files per Ray dataset (bounded driver memory on huge archives).
    anonymous_ids : bool
        Store salted hashes instead of session ids and paths (the installation's
        de-identification salt); a store is written either always or never this way.
    channel_map : Path, optional
        A site's channel aliases (CSV ``label,site`` or YAML/JSON; see
        ``tokenizer.channels.ChannelMap.load``), read before any file.
    """

    model_config = ConfigDict(extra="forbid")

    engine: Literal["local", "ray"] = "local"
    workers: PositiveInt = 1
    model_workers: int | None = Field(None, ge=1)
    retry_failed: bool = False
    part_size: PositiveInt = 64
    flush_seconds: PositiveFloat = 60.0
    device: str = "cpu"
    batch_size: PositiveInt = 8
    model_batch_files: int | None = Field(None, ge=1)
    cache_dir: Path | None = None
    site_level: int | None = Field(None, ge=0)
    ray_address: str | None = None
    ray_chunk: PositiveInt = 5000
    anonymous_ids: bool = False
    channel_map: Path | None = None


def load_channel_map(cfg: EmbedConfig) -> ChannelMap | None:
    """The channel map ``cfg`` names, validated (``ChannelMapError``, a ``ValueError``, names
    the file and line), or None."""
    if cfg.channel_map is None:
        return None
    from tokenizer.channels import ChannelMap

    return ChannelMap.load(cfg.channel_map)


class IndexConfig(BaseModel):
    """FAISS index choices (:func:`services.index.build_index`).

    Attributes
    ----------
    flat_max : int
        ``auto`` builds an exact flat index up to this many sessions, IVF above.
    ivf_nlist : int, optional
        IVF lists (default: about 4 √n, a power of two, 64 to 65536).
    ivf_nprobe : int, optional
        Lists visited per query (default: nlist / 32, at least 32; filtered searches visit
        up to 2× more).
    ivf_train_max : int
        Vectors sampled to train the IVF quantiser.
    hnsw_m : int
        HNSW neighbours per node.
    hnsw_ef_construction, hnsw_ef_search : int
        HNSW build / search breadth.
    rebuild_growth : float
        An IVF index is re-trained (not just extended) once the store has grown this many
        times beyond the size it was trained on.
    exact_below : int
        Filtered searches whose filters leave at most this many sessions are answered
        exactly over those sessions.
    """

    model_config = ConfigDict(extra="forbid")

    flat_max: PositiveInt = 50_000
    ivf_nlist: int | None = Field(None, ge=1)
    ivf_nprobe: int | None = Field(None, ge=1)
    ivf_train_max: int = Field(200_000, ge=1000)
    hnsw_m: int = Field(32, ge=4)
    hnsw_ef_construction: int = Field(80, ge=8)
    hnsw_ef_search: int = Field(96, ge=8)
    rebuild_growth: float = Field(4.0, gt=1.0)
    exact_below: NonNegativeInt = 20_000


class ServeConfig(BaseModel):
    """The HTTP service (:func:`services.api.create_app`).

    Attributes
    ----------
    store : Path
        Embedding store.
    checkpoint : Path
        Session-transformer checkpoint used to embed uploads (its model must be in the store).
    probes : Path, optional
        Benchmark results folder holding ``probes/<task>.json``.
    api_keys_file : Path, optional
        One key per line (``#`` comments allowed); else ``CLEF_API_KEYS`` (comma-separated).
    max_upload_mb : float
        Largest accepted upload.
    max_k : int
        Largest number of neighbours one request may ask for.
    device : str
        Torch device for uploads.
    reload_seconds : float
        How often (at most) a request checks whether the store grew or its index was
        rebuilt; a change is loaded in the background and swapped in atomically, the
        current index answering meanwhile. 0 turns reloading off.
    reports : Path, optional
        Folder of ``<session_id>.txt`` reports whose findings the explorer shows (default:
        ``reports/`` beside or above the store's archive, when there is one).
    warm_explorer : bool
        At start, pay the explorer's first drawing's one-off costs, then draw in the
        background (low CPU priority) the spectrograms of stored sessions not drawn yet,
        so a session's first view reads its spectrogram from disk
        (:meth:`services.explorer.signals.SessionSignals.predraw`). Off by default here;
        ``clef serve`` turns it on.
    """

    model_config = ConfigDict(extra="forbid")

    store: Path
    checkpoint: Path
    probes: Path | None = None
    api_keys_file: Path | None = None
    max_upload_mb: PositiveFloat = 512.0
    max_k: PositiveInt = 500
    device: str = "cpu"
    reload_seconds: NonNegativeFloat = 10.0
    reports: Path | None = None
    warm_explorer: bool = False
