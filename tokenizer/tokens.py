"""Tokenize recordings and archives with a trained VQGAN; write the ``tokens`` Parquet table.

Tokens of one session: ``codes`` int16 ``(n_windows, grid_f, grid_t)`` (2048 = 16 × 128 per
1280 s window in base) and ``token_mask`` of the same shape (a token is valid when its
time span holds a valid frame; padding at the end of the last window is invalid).

``tokens`` table (one row per (file, window); parts ``tokens-00000.parquet`` ...)

=================  ==============  ==================================================
column             type            meaning
=================  ==============  ==================================================
``source_sha256``  str             SHA-256 of the file's bytes
``path``           str             file path relative to the archive root
``window``         int32           window number (0-based)
``n_windows``      int32           windows of this session
``start_s``        float64         start of the window in the session (s)
``n_valid_frames`` int32           unpadded, unmasked frames in the window
``codes``          list<int16>     ``grid_f * grid_t`` codes, row-major over
                                   (frequency, time): ``codes[f * grid_t + t]``
``token_mask``     list<bool>      validity of each code, same order
``grid_freq``      int16           ``grid_f``
``grid_time``      int16           ``grid_t``
``tokenizer``      str             first 16 hex digits of the checkpoint's weights SHA-256
=================  ==============  ==================================================

Files that cannot be tokenized go to ``errors-00000.parquet`` ... (``path``,
``source_sha256`` (may be null), ``error_kind``, ``error``). ``manifest.json`` records
the checkpoint (weights SHA-256, contract digest, grid, codebook size); a later run into
the same folder must use the same checkpoint. Every part is written atomically (temp
file + rename) every ``part_size`` files, so an interrupted run loses at most one part
and a rerun skips the files already tokenized (by content hash) and removes the temp files
a killed run left behind.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import polars as pl
import torch

from tokenizer.atomic import remove_stale_temps, write_json_atomic, write_parquet_atomic
from tokenizer.channels import ChannelMap
from tokenizer.contract import SignalContract
from tokenizer.errors import ContractMismatchError, IngestError, UnreadableFileError
from tokenizer.hashing import file_sha256
from tokenizer.ingest import BLOCK_S, RecordingStream
from tokenizer.recording import Recording, RecordingInfo
from tokenizer.spectrogram_cache import (
    CacheWriter,
    SessionSpectrogram,
    SpectrogramCache,
    checked_frames,
    compute_spectrogram,
    find_recordings,
)
from tokenizer.spectrogram_stream import FrameBlock
from tokenizer.vqgan.model import VQGAN
from tokenizer.windows import WindowSpec, token_mask_np, window_input

log = logging.getLogger(__name__)

#: Schema tag written into every part's Parquet metadata.
SCHEMA = "clef.tokens/1"

#: Polars dtypes of the tokens table.
TOKENS_SCHEMA: dict[str, object] = {
    "source_sha256": pl.String, "path": pl.String, "window": pl.Int32, "n_windows": pl.Int32,
    "start_s": pl.Float64, "n_valid_frames": pl.Int32, "codes": pl.List(pl.Int16),
    "token_mask": pl.List(pl.Boolean), "grid_freq": pl.Int16, "grid_time": pl.Int16, "tokenizer": pl.String,
}
#: Polars dtypes of the errors table.
ERRORS_SCHEMA: dict[str, object] = {"path": pl.String, "source_sha256": pl.String, "error_kind": pl.String,
                                   "error": pl.String}


@dataclass(frozen=True)
class Tokens:
    """Tokens of one session.

    Attributes
    ----------
    codes : ndarray, (n_windows, grid_f, grid_t), int16
    token_mask : ndarray, (n_windows, grid_f, grid_t), bool
    n_valid_frames : ndarray, (n_windows,), int
    source_sha256, source_path : str
    window_s : float
        Window length (s).
    """

    codes: np.ndarray
    token_mask: np.ndarray
    n_valid_frames: np.ndarray
    source_sha256: str
    source_path: str
    window_s: float

    @property
    def n_windows(self) -> int:
        """Number of windows."""
        return int(self.codes.shape[0])

    @property
    def grid(self) -> tuple[int, int]:
        """``(grid_f, grid_t)``."""
        return int(self.codes.shape[1]), int(self.codes.shape[2])

    def rows(self, path: str, tokenizer_id: str) -> list[dict[str, object]]:
        """Rows of the ``tokens`` table, ``path`` as it should be recorded."""
        gf, gt = self.grid
        return [{"source_sha256": self.source_sha256, "path": path, "window": w, "n_windows": self.n_windows,
                 "start_s": w * self.window_s, "n_valid_frames": int(self.n_valid_frames[w]),
                 "codes": self.codes[w].reshape(-1).tolist(), "token_mask": self.token_mask[w].reshape(-1).tolist(),
                 "grid_freq": gf, "grid_time": gt, "tokenizer": tokenizer_id} for w in range(self.n_windows)]


class Tokenizer:
    """A trained VQGAN ready to turn sessions into tokens (eval mode, no codebook updates).

    Parameters
    ----------
    model : VQGAN
    device : str
        Torch device for encoding.
    batch_size : int
        Windows encoded together.
    weights_sha256 : str
        Identity of the checkpoint (recorded in the tokens table).
    """

    def __init__(self, model: VQGAN, *, device: str = "cpu", batch_size: int = 4, weights_sha256: str = "") -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.weights_sha256 = weights_sha256
        self.spec = WindowSpec.from_contract(model.ctx.contract, model.config.input.scale_db)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str = "cpu", batch_size: int = 4) -> "Tokenizer":
        """Load a ``vqgan`` checkpoint directory (safetensors only)."""
        model = VQGAN.from_checkpoint(str(path))
        meta = json.loads((Path(path) / "meta.json").read_text())
        return cls(model, device=device, batch_size=batch_size, weights_sha256=meta.get("weights_sha256", ""))

    @property
    def contract(self) -> SignalContract:
        """Signal contract the model was trained under."""
        return self.model.ctx.contract

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid ``(grid_f, grid_t)`` per window."""
        return self.model.ctx.grid

    @property
    def tokenizer_id(self) -> str:
        """Short identity of the checkpoint."""
        return self.weights_sha256[:16]

    def tokenize_spectrogram(self, spec: SessionSpectrogram) -> Tokens:
        """Tokens of a cached/computed session spectrogram (clipped dB)."""
        return self.tokenize_frames([FrameBlock(spec.values, spec.frame_mask, spec.channel_mask)],
                                    spec.source_sha256, spec.source_path)

    @torch.no_grad()
    def tokenize_frames(self, frames: Iterable[FrameBlock], source_sha256: str | Callable[[], str],
                        source_path: str) -> Tokens:
        """Tokens of a session spectrogram given as consecutive frame blocks, encoded a
        batch of windows at a time as the frames come (one window's frames held at a time).

        ``source_sha256`` may be a function, called once the frames are exhausted (a
        streamed file's hash is known at its end).
        """
        n_ch, n_f = self.model.ctx.n_channels, self.model.ctx.n_freqs
        w = self.spec.window_frames
        codes, masks, valid = [], [], []
        batch: list[tuple[np.ndarray, np.ndarray]] = []
        pending: list[FrameBlock] = []
        channel_mask: np.ndarray | None = None

        def flush() -> None:
            x = torch.from_numpy(np.stack([b[0] for b in batch])).to(self.device)
            fm = torch.from_numpy(np.stack([b[1] for b in batch])).to(self.device)
            c, _ = self.model.tokenize(x, fm)
            codes.append(c.cpu().numpy().astype(np.int16))
            batch.clear()

        def window(n: int) -> None:
            """The next window from the first ``n`` frames pending (``n < w``: the last, padded)."""
            values = np.concatenate([f.values for f in pending], axis=2) if len(pending) > 1 else pending[0].values
            frame_mask = np.concatenate([f.frame_mask for f in pending]) if len(pending) > 1 else pending[0].frame_mask
            x, m = window_input(values[:, :, :n], frame_mask[:n], channel_mask, 0, self.spec)
            pending[:] = [FrameBlock(values[:, :, n:], frame_mask[n:], channel_mask)] if values.shape[2] > n else []
            batch.append((x, m))
            masks.append(token_mask_np(m, self.grid))
            valid.append(int(m.sum()))
            if len(batch) == self.batch_size:
                flush()

        for block in frames:
            if block.values.shape[:2] != (n_ch, n_f):
                raise ValueError(f"spectrogram of shape ({n_ch}, {n_f}, T) expected, found {block.values.shape}")
            channel_mask = block.channel_mask
            pending.append(block)
            while sum(f.values.shape[2] for f in pending) >= w:
                window(w)
        if pending or not valid:
            window(sum(f.values.shape[2] for f in pending))
        if batch:
            flush()
        return Tokens(codes=np.concatenate(codes), token_mask=np.stack(masks), n_valid_frames=np.array(valid),
                      source_sha256=source_sha256 if isinstance(source_sha256, str) else source_sha256(),
                      source_path=source_path, window_s=float(self.contract.window_s))

    def tokenize_recording(self, rec: Recording, cache: SpectrogramCache | None = None) -> Tokens:
        """Tokens of a :class:`~tokenizer.recording.Recording` read under this model's contract.

        With a ``cache``, its spectrogram is taken from it by ``rec.source_sha256`` when
        present, else computed and stored there.

        Raises
        ------
        ContractMismatchError
            The recording was read under another contract.
        """
        if rec.contract_digest and rec.contract_digest != self.contract.digest():
            raise ContractMismatchError(rec.source_path, f"a recording read under contract {self.contract.digest()} "
                                        f"expected, found {rec.contract_digest}")
        rec.check(self.contract)
        if cache is None:
            return self.tokenize_spectrogram(compute_spectrogram(rec, self.contract))
        return self.tokenize_spectrogram(self._check_cache(cache).spectrogram_of(rec)[0])

    def tokenize_file(self, path: str | Path, cache: SpectrogramCache | None = None, *,
                      channel_map: ChannelMap | None = None, threads: int | None = None,
                      known: Callable[[str], bool] | None = None,
                      block_s: float | None = BLOCK_S) -> tuple[RecordingInfo | None, Tokens | None]:
        """Read an EDF/BDF file once and tokenize it as it is read, in bounded memory.

        The file is streamed (:class:`tokenizer.ingest.RecordingStream`): its signal
        block by block, its spectrogram frame block by frame block
        (:func:`tokenizer.spectrogram_cache.checked_frames`), its windows encoded a batch
        at a time, so memory does not grow with the recording's length. A recording no
        longer than ``block_s`` is one block: what :func:`tokenizer.ingest.read_recording`
        and :meth:`tokenize_recording` give, to the bit; a longer one matches them
        within float32 rounding. A channel found flat or railed only at the end of a
        long recording has the file read a second time without it.

        Parameters
        ----------
        path : path
            EDF/BDF file.
        cache : SpectrogramCache, optional
            The spectrogram is stored there as it is computed; a recording of one block
            found there (by its hash, known before any preprocessing) is still read, for
            what reading decides, but its spectrogram is the cache's.
        channel_map : ChannelMap, optional
            A site's channel aliases.
        threads : int, optional
            Threads of the preprocessing (see :func:`tokenizer.ingest.read_recording`).
        known : callable, optional
            Called with the file's SHA-256 once every record is read; True stops the
            work there (for a recording of one block: before any preprocessing).
        block_s : float or None
            Seconds of signal per block (None: the whole recording at once).

        Returns
        -------
        info : RecordingInfo or None
            What was read (None when ``known`` stopped the work).
        tokens : Tokens or None

        Raises
        ------
        tokenizer.IngestError
            The file cannot be read or is too short (a subclass naming the problem).
        """
        if cache is not None:
            self._check_cache(cache)
        exclude: tuple[str, ...] = ()
        while True:
            hashes: list[str] = []  # the file's hash, once every record is read

            def hashed(sha: str) -> bool:
                hashes.append(sha)
                return known is not None and known(sha)

            stream = RecordingStream(path, self.contract, threads=threads, channel_map=channel_map,
                                     block_s=block_s, exclude=exclude, known=hashed)

            def finish(stream: RecordingStream = stream) -> bool:
                if stream.info is not None:
                    stream.info.check_long_enough(self.contract)
                return stream.info is not None

            frames = _CachedOrComputed(str(path), stream, self.contract, finish,
                                         lambda: cache.frames(hashes[0]) if cache is not None and hashes else None)
            first = next(frames, None)  # none: ``known`` stopped the stream before its first block
            if first is None:
                return None, None
            writer = cache.writer() if cache is not None and not frames.cached else None
            tokens = self.tokenize_frames(frames.tee(itertools.chain([first], frames), writer),
                                          lambda: stream.source_sha256 or "", str(path))
            if stream.info is None:
                return None, None
            if not stream.late_masked:
                break
            log.info("%s: %s flat or railed, found at the end of the recording; reading it again without",
                     Path(path).name, ", ".join(stream.late_masked))
            exclude = stream.late_masked
        if writer is not None:
            writer.commit(stream.info.source_sha256, stream.info.source_path)
        return stream.info, tokens

    def _check_cache(self, cache: SpectrogramCache) -> SpectrogramCache:
        if cache.contract != self.contract:
            raise ValueError("the spectrogram cache must use the tokenizer's contract")
        return cache


class _CachedOrComputed:
    """The spectrogram frames of a streamed file: the cache's when the file's hash is
    known before its first block and found in the cache, else computed block by block.

    A recording of one block is hashed before any preprocessing, so a cached one skips
    the multitaper (most of the work); its signal still passes through the stream, for
    what reading decides (masks, annotations, facts). A longer recording's hash is known
    only once its last block is read, after its frames were computed: hashing it first
    would read every file twice.
    """

    def __init__(self, path: str, stream: RecordingStream, contract: SignalContract, finish: Callable[[], bool],
                 lookup: Callable[[], Iterator[FrameBlock] | None]) -> None:
        self.cached = False
        self._frames = self._run(path, stream, contract, finish, lookup)

    def __iter__(self) -> Iterator[FrameBlock]:
        return self._frames

    def __next__(self) -> FrameBlock:
        return next(self._frames)

    def _run(self, path: str, stream: RecordingStream, contract: SignalContract, finish: Callable[[], bool],
             lookup: Callable[[], Iterator[FrameBlock] | None]) -> Iterator[FrameBlock]:
        blocks = iter(stream)
        first = next(blocks, None)
        entry = lookup() if first is not None else None
        if entry is None:
            chained = itertools.chain([first], blocks) if first is not None else blocks
            yield from checked_frames(path, chained, contract, finish=finish)
            return
        self.cached = True
        for _ in blocks:
            pass
        if finish():
            yield from entry

    def tee(self, frames: Iterable[FrameBlock], writer: CacheWriter | None) -> Iterator[FrameBlock]:
        """``frames``, each also given to ``writer`` when they are computed, not cached."""
        for f in frames:
            if writer is not None and not self.cached:
                writer.add(f)
            yield f


@dataclass
class TokenizeSummary:
    """Outcome of :func:`tokenize_archive`."""

    files: int = 0
    tokenized: int = 0
    skipped: int = 0
    errors: int = 0
    windows: int = 0
    parts: list[str] = field(default_factory=list)


def read_tokens(out_dir: str | Path) -> pl.DataFrame:
    """All token rows written to ``out_dir`` (empty frame with the schema if none)."""
    parts = sorted(Path(out_dir).glob("tokens-*.parquet"))
    if not parts:
        return pl.DataFrame(schema=TOKENS_SCHEMA)
    return pl.concat([pl.read_parquet(p) for p in parts])


def read_errors(out_dir: str | Path) -> pl.DataFrame:
    """All error rows written to ``out_dir``."""
    parts = sorted(Path(out_dir).glob("errors-*.parquet"))
    if not parts:
        return pl.DataFrame(schema=ERRORS_SCHEMA)
    return pl.concat([pl.read_parquet(p) for p in parts])


def _done_hashes(out: Path) -> set[str]:
    """Content hashes already tokenized in ``out`` (reads only that column)."""
    done: set[str] = set()
    for p in sorted(out.glob("tokens-*.parquet")):
        done.update(pl.read_parquet(p, columns=["source_sha256"])["source_sha256"].to_list())
    return done


def _check_manifest(out: Path, tok: Tokenizer, checkpoint: str | Path) -> None:
    manifest = {"schema": SCHEMA, "weights_sha256": tok.weights_sha256, "contract_digest": tok.contract.digest(),
                "grid": list(tok.grid), "n_codes": tok.model.config.quantizer.n_codes,
                "window_s": tok.contract.window_s, "checkpoint": str(checkpoint)}
    path = out / "manifest.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("weights_sha256") != tok.weights_sha256 or old.get("contract_digest") != tok.contract.digest():
            raise ValueError(f"{out} holds tokens of another checkpoint ({old.get('checkpoint')}, weights "
                             f"{str(old.get('weights_sha256'))[:16]}); use another --out")
        return
    write_json_atomic(manifest, path, indent=2)


def tokenize_archive(
    archive: str | Path,
    checkpoint: str | Path,
    out: str | Path,
    *,
    cache_dir: str | Path | None = None,
    part_size: int = 64,
    device: str = "cpu",
    batch_size: int = 4,
    retry_errors: bool = False,
    on_file: Callable[[str, str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    channel_map: ChannelMap | None = None,
) -> TokenizeSummary:
    """Tokenize every EDF/BDF file under ``archive`` into Parquet parts in ``out`` (resumable).

    Parameters
    ----------
    archive : path
        Directory searched recursively for ``*.edf`` / ``*.bdf`` (any case).
    checkpoint : path
        ``vqgan`` checkpoint directory.
    out : path
        Output folder (see the module docstring for its layout).
    cache_dir : path, optional
        Spectrogram cache (default ``$CLEF_HOME/cache/spectrograms``).
    part_size : int
        Files per Parquet part (parts are written atomically).
    device : str
        Torch device for the encoder.
    batch_size : int
        Windows encoded together.
    retry_errors : bool
        Try again files recorded in an earlier run's errors.
    on_file : callable, optional
        ``on_file(path, status)`` after each file; status is ``tokenized``, ``skipped``
        or ``error``.
    on_start : callable, optional
        ``on_start(n_files)`` once the archive is listed.
    channel_map : ChannelMap, optional
        A site's channel aliases the files are read with.

    Returns
    -------
    TokenizeSummary
    """

    if part_size < 1:
        raise ValueError(f"part_size must be >= 1, found {part_size}")
    archive, out = Path(archive), Path(out)
    files = find_recordings(archive)
    tok = Tokenizer.from_checkpoint(checkpoint, device=device, batch_size=batch_size)
    out.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temps(out, ".*.tmp-*"):  # half-written parts of a run that was killed
        log.info("removed %s, left by an interrupted run", stale.name)
    _check_manifest(out, tok, checkpoint)
    cache = SpectrogramCache(cache_dir, tok.contract, channel_map=channel_map)
    done = _done_hashes(out)
    old_errors = read_errors(out)
    failed_sha = set() if retry_errors else set(old_errors["source_sha256"].drop_nulls().to_list())
    failed_path = set() if retry_errors else set(old_errors.filter(pl.col("source_sha256").is_null())["path"].to_list())
    metadata = {"clef.schema": SCHEMA, "clef.tokenizer.weights_sha256": tok.weights_sha256,
                "clef.contract_digest": tok.contract.digest(), "clef.grid": f"{tok.grid[0]}x{tok.grid[1]}"}
    next_part = 1 + max((int(p.stem.split("-")[-1]) for p in out.glob("*-[0-9]*.parquet")), default=-1)
    summary = TokenizeSummary(files=len(files))
    rows: list[dict[str, object]] = []
    errors: list[dict[str, object]] = []
    pending = 0
    if on_start is not None:
        on_start(len(files))

    def flush() -> None:
        nonlocal next_part, pending
        if rows:
            path = out / f"tokens-{next_part:05d}.parquet"
            write_parquet_atomic(pl.DataFrame(rows, schema=TOKENS_SCHEMA), path, metadata=metadata)
            summary.parts.append(str(path))
        if errors:
            write_parquet_atomic(pl.DataFrame(errors, schema=ERRORS_SCHEMA), out / f"errors-{next_part:05d}.parquet",
                                 metadata=metadata)
        if rows or errors:
            next_part += 1
        rows.clear()
        errors.clear()
        pending = 0

    for f in files:
        rel = str(f.relative_to(archive))
        sha = None
        status = "tokenized"
        try:
            if rel in failed_path:
                status = "skipped"
            else:
                try:
                    sha = file_sha256(f)
                except OSError as exc:
                    raise UnreadableFileError(f, f"cannot read the file ({exc.strerror or exc})") from None
                if sha in done or sha in failed_sha:
                    status = "skipped"
                else:
                    cached = cache.frames(sha)
                    tokens = (tok.tokenize_frames(cached, sha, str(f)) if cached is not None else
                              tok.tokenize_file(f, cache, channel_map=channel_map)[1])
                    rows.extend(tokens.rows(rel, tok.tokenizer_id))
                    summary.windows += tokens.n_windows
                    done.add(sha)
        except IngestError as exc:
            status = "error"
            log.warning("tokenize: %s", exc)
            errors.append({"path": rel, "source_sha256": sha, "error_kind": exc.kind, "error": str(exc)})
            if sha:
                failed_sha.add(sha)
            else:
                failed_path.add(rel)
        if status == "skipped":
            summary.skipped += 1
        else:
            pending += 1
            summary.tokenized += status == "tokenized"
            summary.errors += status == "error"
        if on_file is not None:
            on_file(str(f), status)
        if pending >= part_size:
            flush()
    flush()
    log.info("tokenized %d files (%d windows), skipped %d, %d errors", summary.tokenized, summary.windows,
             summary.skipped, summary.errors)
    return summary
