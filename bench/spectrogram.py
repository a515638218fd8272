"""Benchmark the multitaper spectrogram against MNE and the FFT bound, single-threaded.

Run ``python bench/spectrogram.py``. One 1280 s, 19-channel, 200 Hz window of random
data is framed once (4 s windows, 1 s step: 1280 frames of 800 samples). Timed round-robin
over ``--repeats`` rounds (best and median reported):

- ours: ``tokenizer.multitaper.multitaper_spectrogram`` on the (19, 256000) array,
  everything included (framing, demeaning, tapering, FFT, power, dB);
- torch (CPU): the same function on a CPU tensor;
- MNE: ``psd_array_multitaper(frames, 200, 0, 32, bandwidth=1.0, adaptive=False,
  low_bias=True, normalization="full", n_jobs=1)`` on the pre-framed (19, 1280, 800)
  float64 array (framing not timed);
- FFT bound: ``scipy.fft.rfft`` (float32, workers=1) of the pre-tapered
  (19, 1280, 3, 800) float32 frames, taper multiplication EXCLUDED, once as one call
  and once in the same frame chunks as ours (its default on a CPU); and the same chunks
  through ``torch.fft.rfft`` on one thread (the FFT ours runs on an array: torch's CPU
  FFT, MKL in the x86 wheels).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.fft  # noqa: E402

from tokenizer.multitaper import default_chunk_frames, dpss_tapers, multitaper_spectrogram  # noqa: E402

SFREQ, N_CH, SECONDS, WIN_S = 200.0, 19, 1280, 4.0


def interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Wall times (s) of each function over ``rounds`` rounds, run round-robin so that
    machine noise hits every method alike (one warm-up call each first)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timing rounds")
    args = parser.parse_args()

    import mne
    import torch

    torch.set_num_threads(1)
    mne.set_log_level("ERROR")
    rng = np.random.default_rng(0)
    data = (20.0 * rng.standard_normal((N_CH, int(SECONDS * SFREQ)))).astype(np.float32)

    with scipy.fft.set_workers(1):
        spec = multitaper_spectrogram(data, SFREQ, threads=1)
        n_win = int(WIN_S * SFREQ)
        starts = np.floor((spec.times - WIN_S / 2) * SFREQ + 0.5).astype(int)
        padded = np.pad(data, ((0, 0), (n_win, n_win)))
        frames = np.stack([padded[:, s + n_win:s + 2 * n_win] for s in starts], axis=1)
        frames64 = frames.astype(np.float64)
        tapers = dpss_tapers(n_win, WIN_S / 2)[0].astype(np.float32)
        centred = frames - frames.mean(axis=-1, keepdims=True)
        tapered = np.ascontiguousarray(centred[:, :, None, :] * tapers)
        chunk = default_chunk_frames(N_CH, len(tapers), n_win)

        def run_mne() -> np.ndarray:
            return mne.time_frequency.psd_array_multitaper(
                frames64, SFREQ, 0.0, 32.0, bandwidth=1.0, adaptive=False, low_bias=True,
                normalization="full", n_jobs=1,
            )[0]

        def fft_chunked() -> None:
            for i in range(0, tapered.shape[1], chunk):
                scipy.fft.rfft(tapered[:, i:i + chunk], axis=-1, workers=1)

        tapered_t = torch.from_numpy(tapered)

        def fft_chunked_torch() -> None:
            for i in range(0, tapered.shape[1], chunk):
                torch.fft.rfft(tapered_t[:, i:i + chunk], dim=-1)

        tensor = torch.from_numpy(data)
        times = interleaved(
            {
                "ours": lambda: multitaper_spectrogram(data, SFREQ, threads=1),
                "torch": lambda: multitaper_spectrogram(tensor, SFREQ),
                "mne": run_mne,
                "fft1": lambda: scipy.fft.rfft(tapered, axis=-1, workers=1),
                "fftc": fft_chunked,
                "fftt": fft_chunked_torch,
            },
            args.repeats,
        )
    best = {name: min(t) for name, t in times.items()}
    median = {name: float(np.median(t)) for name, t in times.items()}
    t_ours, t_torch, t_mne = best["ours"], best["torch"], best["mne"]

    mne_db = 10 * np.log10(run_mne()[..., :128]).transpose(0, 2, 1)
    diff = np.abs(mne_db - spec.values)
    torch_diff = np.abs(multitaper_spectrogram(tensor, SFREQ).values - spec.values).max()
    t_bound = min(best["fft1"], best["fftc"])

    print(f"multitaper spectrogram bench: {N_CH} ch x {SECONDS} s @ {SFREQ:g} Hz -> "
          f"{spec.shape}, {len(tapers)} tapers, {tapered.shape[1]} frames of {n_win} samples")
    print(f"single thread; {platform.processor() or platform.machine()}, python "
          f"{platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"mne {mne.__version__}, torch {torch.__version__}; {args.repeats} rounds")
    print()
    rows = [
        ("ours (numpy + CPU FFT)", "ours", ""),
        ("ours (torch, CPU)", "torch", ""),
        ("MNE psd_array_multitaper", "mne", "framing not timed"),
        ("FFT bound, one call", "fft1", "taper multiply excluded"),
        (f"FFT bound, {chunk}-frame chunks", "fftc", "taper multiply excluded"),
        ("  same, torch.fft (MKL)", "fftt", "the FFT ours calls on arrays"),
    ]
    print(f"{'method':34s} {'best s':>8s} {'median s':>9s}  note")
    for name, key, note in rows:
        print(f"{name:34s} {best[key]:8.4f} {median[key]:9.4f}  {note}")
    print()
    print(f"MNE / ours            : {t_mne / t_ours:6.2f}x  (target >= 5; medians: "
          f"{median['mne'] / median['ours']:.2f}x)")
    print(f"MNE / torch CPU       : {t_mne / t_torch:6.2f}x")
    print(f"ours / FFT bound      : {t_ours / t_bound:6.2f}x  (target <= 2; bound = faster "
          f"of the two FFT rows; vs one call: {t_ours / best['fft1']:.2f}x)")
    print(f"ours / its own FFT    : {t_ours / best['fftt']:6.2f}x  (time outside the FFT: "
          f"{1 - best['fftt'] / t_ours:.0%})")
    print(f"max |ours - MNE| dB   : {diff[:, :, spec.frame_mask].max():.2e} (valid frames), "
          f"{diff.max():.2e} (all frames, padded edges included)")
    print(f"max |torch - numpy| dB: {torch_diff:.2e}")


if __name__ == "__main__":
    main()
