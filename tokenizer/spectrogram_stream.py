"""The session spectrogram of a streamed recording, frame block by frame block.

Frames are independent given the samples they cover, so the spectrogram of a long
recording is computed block by block from its streamed signal
(:class:`tokenizer.ingest.RecordingStream`), each call of
:func:`tokenizer.multitaper.multitaper_spectrogram` seeing the frames that the samples
received so far complete (plus the samples before them that their windows reach back
to); only a block of signal and a block of frames are in memory at a time. A recording
that comes as one block (:func:`tokenizer.ingest.read_recording`) gets one call over
its whole signal, as :func:`tokenizer.spectrogram_cache.compute_spectrogram` does.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from tokenizer.contract import SignalContract
from tokenizer.ingest import SignalBlock
from tokenizer.multitaper import multitaper_spectrogram


#: Frames computed between two full collections of the multitaper's work buffers (a block
#: of a batch read is more: one per call).
GC_FRAMES = 600


@dataclass(frozen=True)
class FrameBlock:
    """Consecutive frames of a session spectrogram.

    Attributes
    ----------
    values : ndarray, (channels, bins, t), float16
        dB clipped to the contract's ``clip_db`` (what the cache stores).
    frame_mask : ndarray, (t,), bool
    channel_mask : ndarray, (channels,), bool
        The electrodes of the recording (the same for every block of a session).
    """

    values: np.ndarray
    frame_mask: np.ndarray
    channel_mask: np.ndarray


def spectrogram_frames(blocks: Iterable[SignalBlock], contract: SignalContract, *,
                       finish: Callable[[], bool] | None = None, eager: bool = False) -> Iterator[FrameBlock]:
    """The clipped float16 spectrogram of a recording's signal blocks, as frame blocks.

    Each block's frames are computed when the next block arrives (or the signal ends),
    so a recording of one block is one call over its whole signal; ``eager`` computes
    the frames a block completes as soon as it arrives (a follower of a live recording,
    whose next block is the next records the recorder writes). The frames are the same.

    Parameters
    ----------
    blocks : iterable of SignalBlock
        Consecutive blocks from the recording's first sample.
    contract : SignalContract
        Its ``spectrogram`` parameters.
    finish : callable, optional
        Called once the blocks are exhausted, before the last frames: it may raise (a
        recording too short to embed), or return False to stop without them (a stream
        that stopped early).
    eager : bool
        Yield the frames each block completes when it arrives, not when the next one does.

    Yields
    ------
    FrameBlock
        In order; ``ceil(n_samples / hop)`` frames in all (at least one), the frames
        that reach past the signal masked.

    Raises
    ------
    ValueError
        From :func:`tokenizer.multitaper.multitaper_spectrogram` (a signal shorter than
        one window, non-finite values).
    """
    sp = contract.spectrogram
    sf = contract.sfreq
    hop, n_win = int(round(sp.step_s * sf)), int(round(sp.window_s * sf))
    first_start = math.floor(0.5 * sp.step_s * sf - sp.window_s * sf / 2 + 0.5 + 1e-9)
    back = max(0, -(first_start // hop)) * hop  # samples before a frame's hop its window reaches back to
    held: list[SignalBlock] = []  # the signal the next frames need
    done = 0  # frames yielded
    uncollected = [0]  # frames computed since the last collection

    def frames(stop: int, end: int) -> FrameBlock:
        """Frames ``[done, stop)`` from the samples held (``end``: samples in all), from a
        whole number of hops before the first, at least one window of them."""
        lo = max(0, min(done * hop - back, (end - n_win) // hop * hop))
        a, b = lo - held[0].start, end - held[0].start
        data = held[0].data if len(held) == 1 else np.concatenate([h.data for h in held], axis=1)
        mask = held[0].sample_mask if len(held) == 1 else np.concatenate([h.sample_mask for h in held])
        skip = (done * hop - lo) // hop
        spec = multitaper_spectrogram(data[:, a:b], sf, window_s=sp.window_s, step_s=sp.step_s,
                                      bandwidth=sp.bandwidth, fmin=sp.fmin, fmax=sp.fmax,
                                      n_frames=skip + stop - done, sample_mask=mask[a:b])
        values = np.clip(spec.values[:, :, skip:], sp.clip_db[0], sp.clip_db[1]).astype(np.float16)
        # The multitaper's work buffers sit in a reference cycle (its chunk function calls
        # itself), which only the cycle collector frees: many calls would pile them up. A
        # full collection costs a fraction of a second in a process that holds a model, so
        # the small calls of a live follower collect the young generations (where this
        # call's cycle is) and share a full collection per GC_FRAMES frames.
        uncollected[0] += stop - done
        if uncollected[0] >= GC_FRAMES:
            gc.collect()
            uncollected[0] = 0
        else:
            gc.collect(1)
        return FrameBlock(values, spec.frame_mask[skip:].astype(bool), held[0].channel_mask)

    for block in blocks:
        if eager:
            held.append(block)
        if held:  # the frames the blocks held so far complete
            end = held[-1].start + held[-1].data.shape[1]
            stop = (end - n_win - first_start) // hop + 1
            if stop > done and end >= n_win:  # a call sees at least one window of signal
                yield frames(stop, end)
                done = stop
                while held and held[0].start + held[0].data.shape[1] <= done * hop - back - n_win:
                    held.pop(0)
        if not eager:
            held.append(block)
    if (finish is not None and not finish()) or not held:
        return
    end = held[-1].start + held[-1].data.shape[1]
    yield frames(max(math.ceil(end / hop - 1e-9), 1), end)
