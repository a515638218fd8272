"""On-disk cache of session spectrograms, and archive discovery.

Computing a spectrogram means reading, resampling and filtering the EDF and running the
multitaper estimate; training reads every session many times, so the result is cached.

Key
    SHA-256 of ``{file sha256, contract digest, spectrogram parameters, spectrogram code
    version, cache format}``. The contract digest covers the montage, rate, filters and
    spectrogram parameters; the code version is :data:`SPECTROGRAM_VERSION`, bumped when a
    change alters the numbers an entry holds (a refactor that keeps them keeps every
    user's cache). A site's
    channel map (:class:`tokenizer.channels.ChannelMap`), when one is used, adds its
    digest. Changing any of these gives another key, so a stale entry is never read.
Files
    ``<root>/<key[:2]>/<key>.npz`` (uncompressed, no pickled objects) holding ``values``
    ``(channels, bins, T)`` float16 dB already clipped to the contract's ``clip_db``
    (float16 steps are ≤ 0.03 dB in that range), ``frame_mask`` ``(T,)``, ``channel_mask``
    ``(channels,)`` and a JSON ``meta`` string. Written atomically (temp + rename), as
    the frames are computed (:class:`CacheWriter`): ``values`` is stored frame-major
    (Fortran order), so an entry is read back a block of frames at a time
    (:func:`entry_frames`); entries stored in C order still load. An unreadable entry
    is recomputed.
Location
    ``$CLEF_HOME/cache/spectrograms`` (``~/.clef/cache/spectrograms``) unless given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, TypeVar

import numpy as np

from tokenizer.atomic import atomic_path
from tokenizer.channels import ChannelMap
from tokenizer.contract import SignalContract
from tokenizer.home import clef_home
from tokenizer.errors import IngestError, UnreadableFileError
from tokenizer.hashing import file_sha256
from tokenizer.ingest import SignalBlock, read_recording
from tokenizer.recording import Recording
from tokenizer.spectrogram_stream import FrameBlock, spectrogram_frames

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Layout version of the cache files.
CACHE_FORMAT = 1
#: File suffixes of an archive (case-insensitive).
RECORDING_SUFFIXES = (".edf", ".bdf")


class SpectrogramError(IngestError):
    """A recording was read but no spectrogram can be computed (e.g. shorter than one taper window)."""

    kind = "spectrogram"


def require_archive_dir(root: str | Path) -> Path:
    """``root`` as a Path, checked to be a directory (an archive of EDF/BDF files).

    Raises
    ------
    FileNotFoundError
        ``root`` is not a directory; the message says whether it is a file or nothing.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"archive {root}: expected a directory of EDF/BDF files, found "
                                + ("a file" if root.exists() else "nothing"))
    return root


def find_recordings(root: str | Path) -> list[Path]:
    """EDF/BDF files under ``root``, searched recursively (suffix case-insensitive), sorted.

    Raises
    ------
    FileNotFoundError
        ``root`` is not a directory.
    """
    root = require_archive_dir(root)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in RECORDING_SUFFIXES and p.is_file())


def default_cache_dir() -> Path:
    """``$CLEF_HOME/cache/spectrograms``."""
    return clef_home() / "cache" / "spectrograms"


#: Version of the numbers a cache entry holds: the read (channel mapping, units,
#: resampling, filters) and the multitaper estimate. Part of every cache key. Bump it in the
#: change that alters them: a test pins an entry's values for a generated file and fails
#: until the version moves with them. Keyed by a version, not by a hash of the source, so
#: that an edit that keeps the numbers does not throw away every archive's cache, and an
#: edit outside multitaper.py that changes them (the filters) still does.
SPECTROGRAM_VERSION = 1


def cache_key(source_sha256: str, contract: SignalContract, channel_map: ChannelMap | None = None) -> str:
    """Cache key of a file's spectrogram under ``contract`` (see the module docstring)."""
    payload = {
        "file_sha256": source_sha256,
        "contract": contract.digest(),
        "spectrogram": contract.spectrogram.model_dump(mode="json"),
        "code": SPECTROGRAM_VERSION,
        "format": CACHE_FORMAT,
    }
    if channel_map is not None and len(channel_map):
        payload["channel_map"] = channel_map.digest()  # absent without one: existing keys unchanged
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class SessionSpectrogram:
    """A session's clipped spectrogram and masks, as stored in the cache.

    Attributes
    ----------
    values : ndarray, (channels, bins, T), float16
        dB clipped to ``clip_db``.
    frame_mask : ndarray, (T,), bool
    channel_mask : ndarray, (channels,), bool
    source_sha256 : str
    source_path : str
    """

    values: np.ndarray
    frame_mask: np.ndarray
    channel_mask: np.ndarray
    source_sha256: str
    source_path: str

    @property
    def n_frames(self) -> int:
        """Frames (seconds at a 1 s step)."""
        return int(self.values.shape[2])


def compute_spectrogram(rec: Recording, contract: SignalContract) -> SessionSpectrogram:
    """Multitaper spectrogram of a recording under ``contract``, clipped, float16.

    Raises
    ------
    TooShortError
        No continuous segment is as long as one taper window.
    SpectrogramError
        No spectrogram can be computed for another reason.
    """
    rec.check_long_enough(contract)
    block = SignalBlock(0, rec.data, rec.sample_mask, rec.channel_mask.astype(bool))
    (frames,) = checked_frames(rec.source_path, [block], contract)
    return SessionSpectrogram(values=frames.values, frame_mask=frames.frame_mask, channel_mask=frames.channel_mask,
                              source_sha256=rec.source_sha256, source_path=rec.source_path)


def checked_frames(path: str | Path, blocks: Iterable[SignalBlock], contract: SignalContract, *,
                   finish: Callable[[], bool] | None = None, eager: bool = False) -> Iterator[FrameBlock]:
    """:func:`tokenizer.spectrogram_stream.spectrogram_frames` of a recording's blocks
    (``finish`` and ``eager`` as there), its failures as :class:`SpectrogramError` naming the file.

    Raises
    ------
    SpectrogramError
        No spectrogram can be computed (non-finite samples, a wrong number of bins).
    """
    sp = contract.spectrogram
    try:
        for frames in spectrogram_frames(blocks, contract, finish=finish, eager=eager):
            if frames.values.shape[1] != sp.n_freqs:
                raise SpectrogramError(path, f"{sp.n_freqs} frequency bins expected, found {frames.values.shape[1]}")
            yield frames
    except ValueError as exc:
        raise SpectrogramError(path, f"no spectrogram: {exc}") from None


class SpectrogramCache:
    """Spectrograms of files under one contract, cached on disk.

    Parameters
    ----------
    root : str or Path, optional
        Cache directory (default :func:`default_cache_dir`).
    contract : SignalContract, optional
        Contract used to read files and compute spectrograms (default: base).
    channel_map : ChannelMap, optional
        A site's channel aliases files are read with (part of the cache key).
    """

    def __init__(self, root: str | Path | None = None, contract: SignalContract | None = None, *,
                 channel_map: ChannelMap | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.contract = contract or SignalContract()
        self.channel_map = channel_map

    def path_for(self, source_sha256: str) -> Path:
        """Cache file of a source file's content."""
        key = cache_key(source_sha256, self.contract, self.channel_map)
        return self.root / key[:2] / f"{key}.npz"

    def get(self, source_sha256: str) -> SessionSpectrogram | None:
        """The cached spectrogram, or None (missing or unreadable entry)."""
        return self._entry(source_sha256, load_entry)

    def put(self, spec: SessionSpectrogram) -> Path:
        """Store ``spec`` atomically; returns the cache file."""
        writer = self.writer()
        writer.add(FrameBlock(spec.values, spec.frame_mask, spec.channel_mask))
        return writer.commit(spec.source_sha256, spec.source_path)

    def writer(self) -> CacheWriter:
        """A writer of one entry, given its frames as they are computed (:class:`CacheWriter`)."""
        return CacheWriter(self)

    def frames(self, source_sha256: str) -> Iterator[FrameBlock] | None:
        """The cached spectrogram as frame blocks, read a block at a time (see
        :func:`entry_frames`), or None (missing or unreadable entry)."""
        return self._entry(source_sha256, entry_frames)

    def _entry(self, source_sha256: str, read: Callable[[Path], T]) -> T | None:
        """``read`` of the entry of ``source_sha256``, or None (missing or unreadable)."""
        path = self.path_for(source_sha256)
        if not path.is_file():
            return None
        try:
            return read(path)
        except Exception as exc:  # truncated or foreign file: recompute
            log.warning("ignoring unreadable cache entry %s (%s)", path, exc)
            return None

    def load_or_compute(self, path: str | Path, *, source_sha256: str | None = None,
                        use_cache: bool = True) -> tuple[SessionSpectrogram, bool]:
        """Spectrogram of the file at ``path``, from the cache when present.

        With ``use_cache=False`` the spectrogram is recomputed (and stored) even if cached.

        Returns
        -------
        spectrogram : SessionSpectrogram
        hit : bool
            True when it came from the cache.

        Raises
        ------
        IngestError
            The file cannot be read (a subclass naming the problem).
        """
        sha = source_sha256 or _sha_or_raise(path)
        cached = self.get(sha) if use_cache else None
        if cached is not None:
            return cached, True
        return self.spectrogram_of(read_recording(path, self.contract, channel_map=self.channel_map),
                                   use_cache=False)

    def spectrogram_of(self, rec: Recording, *, use_cache: bool = True) -> tuple[SessionSpectrogram, bool]:
        """Spectrogram of a recording already read, from the cache when present (by its
        ``source_sha256``), else computed and stored.

        Returns
        -------
        spectrogram : SessionSpectrogram
        hit : bool
            True when it came from the cache.
        """
        cached = self.get(rec.source_sha256) if use_cache else None
        if cached is not None:
            return cached, True
        spec = compute_spectrogram(rec, self.contract)
        self.put(spec)
        return spec, False


class CacheWriter:
    """One cache entry written as its frames are computed, in bounded memory.

    The values go frame-major to an anonymous temporary file in the cache folder; the
    entry is then written atomically, ``values`` stored in Fortran order (the layout of
    those bytes), which :func:`numpy.load` reads as any array and :func:`entry_frames`
    reads back a block of frames at a time.

    Parameters
    ----------
    cache : SpectrogramCache
    """

    def __init__(self, cache: SpectrogramCache) -> None:
        cache.root.mkdir(parents=True, exist_ok=True)
        self.cache = cache
        self._values = tempfile.TemporaryFile(dir=cache.root)
        self._masks: list[np.ndarray] = []
        self._channel_mask: np.ndarray | None = None
        self._shape: tuple[int, int] = (0, 0)

    def add(self, frames: FrameBlock) -> None:
        """Append the next frames."""
        self._values.write(np.ascontiguousarray(frames.values.astype(np.float16).transpose(2, 1, 0)).tobytes())
        self._masks.append(frames.frame_mask)
        self._channel_mask, self._shape = frames.channel_mask, frames.values.shape[:2]

    def commit(self, source_sha256: str, source_path: str) -> Path:
        """Write the entry of the file ``source_sha256`` atomically; returns its path."""
        path = self.cache.path_for(source_sha256)
        meta = json.dumps({"source_sha256": source_sha256, "source_path": source_path,
                           "contract_digest": self.cache.contract.digest(), "code": SPECTROGRAM_VERSION,
                           "format": CACHE_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        frame_mask = np.concatenate(self._masks)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f2")), "fortran_order": True,
                  "shape": (*self._shape, len(frame_mask))}
        self._values.seek(0)
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("values.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array_header_1_0(out, header)
                shutil.copyfileobj(self._values, out, 2**22)
            for name, arr in (("frame_mask", frame_mask), ("channel_mask", self._channel_mask),
                              ("meta", np.array(meta))):
                with zf.open(f"{name}.npy", "w") as out:
                    np.lib.format.write_array(out, arr, allow_pickle=False)
        self._values.close()
        return path


def entry_frames(path: str | Path, block_frames: int = 3600) -> Iterator[FrameBlock]:
    """The frames of a cache entry, ``block_frames`` at a time: read block by block from
    an entry stored frame-major (Fortran order, as :class:`CacheWriter` writes), loaded
    whole from one stored otherwise.

    The entry's header and masks are read before this returns (an unreadable entry
    raises here).
    """
    zf = zipfile.ZipFile(path)
    try:
        masks = {}
        for name in ("frame_mask", "channel_mask"):
            with zf.open(f"{name}.npy") as f:
                masks[name] = np.lib.format.read_array(f, allow_pickle=False).astype(bool)
        values = zf.open("values.npy")
        version = np.lib.format.read_magic(values)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0)(values)
    except Exception:
        zf.close()
        raise

    def frames() -> Iterator[FrameBlock]:
        with zf, values:
            if not fortran:
                whole = np.load(path, allow_pickle=False)["values"]
                yield FrameBlock(whole, masks["frame_mask"], masks["channel_mask"])
                return
            n_ch, n_bins, n_frames = shape
            for a in range(0, n_frames, block_frames):
                b = min(n_frames, a + block_frames)
                raw = values.read((b - a) * n_ch * n_bins * dtype.itemsize)
                v = np.frombuffer(raw, dtype=dtype).reshape(b - a, n_bins, n_ch).transpose(2, 1, 0)
                yield FrameBlock(v, masks["frame_mask"][a:b], masks["channel_mask"])

    return frames()


def _sha_or_raise(path: str | Path) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot read the file ({exc.strerror or exc})") from None


def load_entry(path: str | Path) -> SessionSpectrogram:
    """Read one cache file (no pickled objects are accepted)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return SessionSpectrogram(values=z["values"], frame_mask=z["frame_mask"].astype(bool),
                                  channel_mask=z["channel_mask"].astype(bool),
                                  source_sha256=meta["source_sha256"], source_path=meta["source_path"])


@dataclass(frozen=True)
class CacheResult:
    """Outcome of caching one file: its cache file, frames and masks summary, or its error."""

    path: str
    source_sha256: str | None
    cache_file: str | None
    n_frames: int
    hit: bool
    error: str | None = None
    error_kind: str | None = None


def cache_archive(
    paths: Iterable[str | Path], cache: SpectrogramCache, *, on_file: Callable[[CacheResult], None] | None = None,
    known: Mapping[str, str] | None = None,
) -> list[CacheResult]:
    """Compute (or find) the spectrogram of every file; failures are recorded, not raised.

    Parameters
    ----------
    paths : iterable of path
        Files (see :func:`find_recordings`).
    cache : SpectrogramCache
    on_file : callable, optional
        Called after each file (progress bars).
    known : mapping, optional
        ``{str(path): sha256}`` of files known to be unchanged (not hashed again).
    """
    results = []
    for p in paths:
        sha = (known or {}).get(str(p))
        try:
            sha = sha or _sha_or_raise(p)
            entry = cache.path_for(sha)
            n_frames = _frames_of(entry) if entry.is_file() else None
            hit = n_frames is not None
            if not hit:
                spec, _ = cache.load_or_compute(p, source_sha256=sha, use_cache=False)
                n_frames = spec.n_frames
            res = CacheResult(str(p), sha, str(entry), int(n_frames), hit)
        except IngestError as exc:
            log.warning("skipping %s: %s", p, exc)
            res = CacheResult(str(p), sha, None, 0, False, str(exc), exc.kind)
        results.append(res)
        if on_file is not None:
            on_file(res)
    return results


def _frames_of(entry: Path) -> int | None:
    """Frames of a cache entry (reads only its frame mask), or None if unreadable."""
    try:
        with np.load(entry, allow_pickle=False) as z:
            return int(z["frame_mask"].shape[0])
    except Exception as exc:
        log.warning("ignoring unreadable cache entry %s (%s)", entry, exc)
        return None
