"""Time and peak memory of ``clef trend`` on a long recording (issue 19).

Usage::

    python bench/trend.py [--hours 24] [--stride 5min] [--config tiny] [--threads 2] [--out DIR]
    python bench/trend.py --compare REV [--hours 2] [--stride 5min] [--config base] [--checkpoint CK] [--threads 2]
                          [--out DIR]

Writes a 19-channel 256 Hz EDF of ``--hours`` (:func:`memory.write_long_edf`, bench's long-file
writer: 10-minute blocks of sine-and-noise EEG, about 850 MB per 24 h) and a random-weight
checkpoint of ``--config`` (:func:`clef.factory.save_random_checkpoint`; cost does not depend
on training) into ``--out`` (default: a temporary folder, deleted afterwards), then runs
``clef trend FILE --checkpoint CK --stride STRIDE --out OUT --no-progress`` as a child
process with ``--threads`` torch and preprocessing threads, and prints one JSON line: wall
seconds, the child's peak resident set size (``resource.getrusage(RUSAGE_CHILDREN)``),
the number of trend points and the command.

``--compare REV``: the cost of a trend point, in this process, of ``clef/trend.py`` at git
revision ``REV`` (loaded from ``git show``) and of the installed one, on the same
spectrogram frames: the file's frames are computed once (timed: read and spectrogram
seconds per hour of recording) and kept, then the builders (``REV``'s, today's exact
path, today's with ``reuse_tokens``) are fed them, each block to each builder in turn
(so that a change of the machine's load falls on all alike); prints per builder the seconds per
point, its split between the tokenizer (encoder and quantiser), the session
transformer and the rest, and the ratio to ``REV``'s; for today's builders, the
embeddings' cosine to ``REV``'s and the fraction of the transformer's input codes that
are identical. The 24-hour figures it prints are estimates from those costs (the
spectrogram per hour × 24 plus the points of 24 hours × the cost of a point); the
first mode measures one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from memory import write_long_edf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--stride", default="5min")
    ap.add_argument("--config", default="tiny", help="Session-transformer preset (tiny, base, ...).")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="Keep the file, checkpoint and trend here.")
    ap.add_argument("--compare", metavar="REV", default=None,
                    help="Time a point of clef/trend.py at git revision REV and of today's, in this process.")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="With --compare: this (trained) checkpoint instead of a random one of --config.")
    args = ap.parse_args()
    if args.compare is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        run_in(args.out, args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run_in(Path(tmp), args)


def run_in(work: Path, args: argparse.Namespace) -> None:
    """Write the file and the checkpoint into ``work`` (kept when there), run the trend, print the line."""
    from clef.factory import save_random_checkpoint

    edf = write_long_edf(work / f"long_{args.hours:g}h.edf", args.hours)
    ck = work / f"ck_{args.config}"
    if args.compare is not None and args.checkpoint is not None:
        compare(edf, args.checkpoint, args)
        return
    if not ck.is_dir():
        save_random_checkpoint(args.config, ck)
    if args.compare is not None:
        compare(edf, ck, args)
        return
    out = work / f"trend_{args.config}_{args.hours:g}h"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    code = (f"import torch; torch.set_num_threads({args.threads}); from clef.cli import main; import sys; "
            f"sys.argv = ['clef', 'trend', {str(edf)!r}, '--checkpoint', {str(ck)!r}, '--stride', "
            f"{args.stride!r}, '--out', {str(out)!r}, '--no-progress']; main()")
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode:
        sys.exit(f"clef trend failed ({run.returncode}): {run.stderr.strip()}")
    import polars as pl

    points = pl.read_parquet(out / "trend.parquet").height
    print(json.dumps({"hours": args.hours, "stride": args.stride, "config": args.config, "threads": args.threads,
                      "wall_s": round(wall, 1),
                      "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2),
                      "points": points, "cpus": os.cpu_count(),
                      "command": f"clef trend {edf.name} --checkpoint ck_{args.config} --stride {args.stride}",
                      "summary": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""}))


def _revision(rev: str) -> ModuleType:
    """``clef/trend.py`` at git revision ``rev``, as a module of its own."""
    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(["git", "show", f"{rev}:clef/trend.py"], cwd=root, capture_output=True, text=True)
    if src.returncode:
        sys.exit(f"git show {rev}:clef/trend.py failed: {src.stderr.strip()}")
    mod = ModuleType(f"trend_at_{rev}")
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(src.stdout, f"{rev}:clef/trend.py", "exec"), mod.__dict__)
    return mod


class _Timer:
    """Seconds spent in modules' forward passes (hooks), per name."""

    def __init__(self, modules: dict[str, Any]) -> None:
        self.s = dict.fromkeys(modules, 0.0)
        self._t0: dict[str, float] = {}
        self.inputs: list = []  # the transformer's codes, per call
        for name, m in modules.items():
            m.register_forward_pre_hook(self._pre(name))
            m.register_forward_hook(self._post(name))

    def _pre(self, name: str):
        def hook(module, inputs):
            if name == "transformer":
                self.inputs.append(inputs[0].detach().clone())
            self._t0[name] = time.perf_counter()
        return hook

    def _post(self, name: str):
        def hook(module, inputs, output):
            self.s[name] += time.perf_counter() - self._t0.pop(name)
        return hook

    def reset(self) -> None:
        self.s = dict.fromkeys(self.s, 0.0)
        self.inputs = []


def compare(edf: Path, ck: Path, args: argparse.Namespace) -> None:
    """``--compare``: a point's cost of REV's builder and today's, on the same frames; one JSON line each."""
    import numpy as np
    import torch

    import clef.trend as today
    from clef.embedding import Embedder
    from tokenizer.ingest import RecordingStream
    from tokenizer.spectrogram_cache import checked_frames

    base = _revision(args.compare)
    embedder = Embedder(ck)
    tok = embedder.tokenizer
    timer = _Timer({"tokenizer_encoder": tok.model.encoder, "tokenizer_quantizer": tok.model.quantizer,
                    "transformer": embedder.encoder})
    t0 = time.perf_counter()
    stream = RecordingStream(edf, embedder.contract, threads=args.threads, channel_map=embedder.channel_map)
    blocks = list(checked_frames(str(edf), stream, embedder.contract, finish=lambda: stream.info is not None))
    spec_s = time.perf_counter() - t0
    frames = sum(b.values.shape[2] for b in blocks)
    stride = today.parse_duration(args.stride)
    step = embedder.contract.spectrogram.step_s
    print(json.dumps({"hours": args.hours, "config": args.config, "checkpoint": str(ck), "threads": args.threads,
                      "frames": frames,
                      "read_and_spectrogram_s": round(spec_s, 1),
                      "read_and_spectrogram_s_per_hour": round(spec_s / (frames * step / 3600), 2)}), flush=True)
    runs = [("rev " + args.compare, base, {}), ("exact", today, {}), ("reuse_tokens", today, {"reuse_tokens": True})]
    builders = [mod.TrendBuilder(embedder, None, mod.TrendConfig(stride_s=stride, **extra)) for _, mod, extra in runs]
    wall = [0.0] * len(runs)
    parts = [dict.fromkeys(timer.s, 0.0) for _ in runs]
    inputs: list[list] = [[] for _ in runs]
    for block in blocks:  # the builders in turn on each block: a change of the machine's load hits them alike
        for k, builder in enumerate(builders):
            timer.reset()
            t0 = time.perf_counter()
            builder.add(block)
            wall[k] += time.perf_counter() - t0
            parts[k] = {name: parts[k][name] + v for name, v in timer.s.items()}
            inputs[k] += timer.inputs
    ref: dict = {}
    for k, (name, _, _) in enumerate(runs):
        builder = builders[k]
        n = builder.n_points
        emb = np.stack(builder._emb)
        codes = torch.cat(inputs[k]).reshape(n, -1)
        per = {key: v / n for key, v in parts[k].items()}
        tok_s = per["tokenizer_encoder"] + per["tokenizer_quantizer"]
        first = -(-builder.context // builder.stride) * builder.stride  # frames to the first point
        points_24h = int((24 * 3600 / step - first) // builder.stride) + 1
        line = {"builder": name, "points": n, "wall_s": round(wall[k], 1), "s_per_point": round(wall[k] / n, 3),
                "tokenizer_s_per_point": round(tok_s, 3), "transformer_s_per_point": round(per["transformer"], 3),
                "other_s_per_point": round(wall[k] / n - tok_s - per["transformer"], 3),
                "estimate_24h_points": points_24h,
                "estimate_24h_s": round(spec_s / (frames * step / 3600) * 24 + points_24h * wall[k] / n, 1)}
        if not ref:
            ref = {"s_per_point": wall[k] / n, "emb": emb, "codes": codes}
        else:
            a, b = ref["emb"].astype(np.float64), emb.astype(np.float64)
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            line.update({"speedup": round(ref["s_per_point"] / (wall[k] / n), 2),
                         "cosine_min": round(float(cos.min()), 6), "cosine_mean": round(float(cos.mean()), 6),
                         "identical_codes": round(float((codes == ref["codes"]).float().mean()), 4),
                         "max_abs_diff": float(np.abs(a - b).max())})
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
