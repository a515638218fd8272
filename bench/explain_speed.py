"""Cost of one explanation (:func:`clef.explain.explain`) against an earlier implementation (issue 19, "Cost").

Usage::

    python bench/explain_speed.py [--config base] [--minutes 20] [--threads 2] [--reference REV]
        [--modes regions,channels] [--pass-cost]
        [--checkpoint CKPT --probes RESULTS --task TASK --edf FILE [--linear-check]]

By default a random-weight checkpoint of ``--config`` (:func:`clef.factory.save_random_checkpoint`;
the cost does not depend on training) explains the similarity of the generated
``--minutes``-minute 19-channel 256 Hz session (``bench/common.make_file``, the file
``bench/embed.py`` uses) to a fixed random embedding. With ``--checkpoint``, ``--probes``,
``--task`` and ``--edf``, a trained checkpoint's probe on a real file instead (what the
agreement figures below mean something for).

Each explanation runs in its own child process (its peak RSS is its own), the spectrogram
read once before the clock starts (what ``Explanation.seconds`` measures; the reading is
reported beside it), in this order for each mode: the working tree's implementation, then
the implementation of git revision ``--reference`` (its ``clef`` and ``tokenizer``
packages extracted with ``git archive`` into a temporary folder put first on the child's
``sys.path``), so both see the machine in about the same state. Printed per mode: wall
and CPU seconds (the process's user + system time: on a machine shared with other work
the wall time grows with the load, the CPU time much less), the number of variants, the
peak RSS, the ratio reference / current, and how the two agree: the largest absolute
difference of the channel, region and band attributions (occlusion in both) and, for the
time axis, the Pearson correlation, whether the top minute is the same, and the largest
difference relative to the reference's largest absolute time attribution.

``--pass-cost`` only times one encoder pass and the minutes' forward and backward pass
(:data:`clef.explain.GRADIENT_PASSES`) in CPU seconds. ``--linear-check`` (a trained checkpoint's probe) asks whether the regions' and bands'
encoder passes could be replaced by a first-order estimate too, as the minutes' are: it
prints each one's exact drop, the estimate, and the share of codes the occlusion changed.
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

ROOT = Path(__file__).resolve().parents[1]
#: The implementation before the explanation speed work (occlusion of every minute).
DEFAULT_REFERENCE = "fa35e86"


def _child(args: argparse.Namespace) -> None:
    """Explain once in this process; write the result as JSON to ``args.result``."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from clef.embedding import Embedder
    from clef.explain import explain, read_spectrogram, similarity_scorer

    emb = Embedder(args.ckpt)
    if args.task:
        from benchmark_tasks.probes import load_probes

        scorer = load_probes(args.probes)[args.task]
    else:
        dim = int(emb.cfg.model.dim)
        scorer = similarity_scorer(np.random.default_rng(0).normal(size=dim))
    t0 = time.perf_counter()
    spec = read_spectrogram(args.edf, emb, threads=args.threads)
    read_s = time.perf_counter() - t0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    ex = explain(spec, emb, scorer, target="bench", channels=args.mode == "channels")
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.result).write_text(json.dumps({
        "wall_s": wall, "cpu_s": cpu, "read_s": read_s, "peak_rss_mb": peak_mb, "n_variants": ex.n_variants,
        "baseline": ex.baseline, "channel": ex.channel.tolist(), "region": ex.region.tolist(),
        "band": ex.band.tolist(), "time": ex.time.tolist(),
        "method": ex.to_dict().get("method"),
    }))


def _linear_check(ckpt: Path, edf: Path, probes: Path, task: str, threads: int) -> None:
    """Could the encoder pass of a spectral occlusion be replaced by a first-order estimate?

    For each region and band: the exact drop (the occluded codes encoded again) against
    ``-sum_j g_j . (E[c'_j] - E[c_j])`` over the valid tokens, ``g`` the score's gradient in
    the token embeddings at the baseline (through the presence-weighted path, weights 1),
    ``E`` the token embedding table; and the share of codes the occlusion changed.
    """
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from benchmark_tasks.probes import load_probes
    from clef.embedding import Embedder
    from clef.explain import _score_gradient, _tokenize, channel_regions, inpaint_band, read_spectrogram
    from clef.model import aggregate_windows
    from tokenizer.multitaper import CANONICAL_BANDS
    from tokenizer.windows import split_windows, token_mask_np

    emb = Embedder(ckpt)
    score = load_probes(probes)[task]
    spec = read_spectrogram(edf, emb, threads=threads)
    tok, enc = emb.tokenizer, emb.encoder
    if emb.context_columns is not None:
        raise SystemExit("--linear-check: a whole-window checkpoint expected")
    cm = spec.channel_mask.astype(bool)
    x0, m0 = split_windows(spec.values, spec.frame_mask.astype(bool), cm, tok.spec)
    valid = torch.from_numpy(token_mask_np(m0, tok.grid))
    sp = emb.contract.spectrogram
    freqs = sp.fmin + np.arange(sp.n_freqs) / sp.window_s
    inputs, names = [x0], [""]
    for r, idx in channel_regions(tuple(emb.contract.channels)).items():
        x = x0.copy()
        x[:, [i for i in idx if cm[i]]] = 0.0
        inputs.append(x)
        names.append(r)
    for b, rng in CANONICAL_BANDS.items():
        x = inpaint_band(x0, freqs, rng)
        x[:, ~cm] = 0.0
        x *= m0[:, None, None, :]
        inputs.append(x)
        names.append(b)
    codes = torch.from_numpy(_tokenize(tok, inputs, m0, 8))
    grads: list[torch.Tensor] = []
    table = enc.tok.forward

    def keep_grad(ids: torch.Tensor) -> torch.Tensor:
        out = table(ids).detach().requires_grad_(True)
        grads.append(out)
        return out

    enc.tok.forward = keep_grad  # the token embeddings of each window's valid tokens, their gradient kept
    for p in enc.parameters():
        p.requires_grad_(False)
    w = torch.ones(valid.shape, requires_grad=True)
    e, mass, _ = enc.embed_windows_weighted(codes[0], valid, w)
    sess = aggregate_windows(e, mass)
    sess.backward(torch.from_numpy(_score_gradient(score, sess.detach().double().numpy())).float())
    enc.tok.forward = table
    n_tok = valid.reshape(valid.shape[0], -1).sum(1)
    with torch.inference_mode():
        base = float(score(aggregate_windows(enc.embed_windows(codes[0], valid), n_tok).double().numpy()[None])[0])
        exact, linear = [], []
        print(f"{'occluded':10s} {'exact drop':>11s} {'first order':>12s} {'codes changed':>14s}")
        for k in range(1, len(names)):
            s = aggregate_windows(enc.embed_windows(codes[k], valid), n_tok).double().numpy()[None]
            exact.append(base - float(score(s)[0]))
            lin = 0.0
            for r in range(valid.shape[0]):
                idx = torch.nonzero(valid[r].reshape(-1)).flatten()
                d = enc.tok.weight[codes[k, r].reshape(-1)[idx]] - enc.tok.weight[codes[0, r].reshape(-1)[idx]]
                lin -= float((grads[r].grad * d).sum())
            linear.append(lin)
            changed = float((codes[k] != codes[0])[valid].float().mean())
            print(f"{names[k]:10s} {exact[-1]:+11.4f} {lin:+12.4f} {changed:14.2f}")
    print(f"correlation exact / first order: {np.corrcoef(exact, linear)[0, 1]:.3f}")


def _pass_cost(config: str, ckpt: Path, edf: Path, threads: int, repeats: int = 2) -> None:
    """CPU seconds of one encoder pass and of the minutes' forward and backward pass on the
    session's baseline codes (what ``clef.explain.GRADIENT_PASSES`` stands for)."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from clef.embedding import Embedder
    from clef.explain import _encode, _time_gradient, _tokenize, read_spectrogram, similarity_scorer
    from tokenizer.windows import split_windows, token_mask_np
    from common import best_of

    emb = Embedder(ckpt)
    spec = read_spectrogram(edf, emb, threads=threads)
    tok = emb.tokenizer
    x0, m0 = split_windows(spec.values, spec.frame_mask.astype(bool), spec.channel_mask.astype(bool), tok.spec)
    codes = _tokenize(tok, [x0], m0, 1)[0]
    valid = token_mask_np(m0, tok.grid)
    score = similarity_scorer(np.random.default_rng(0).normal(size=int(emb.cfg.model.dim)))
    col_step = np.arange(codes.shape[0] * tok.grid[1]) // 6

    def cpu(fn) -> float:
        return best_of(fn, repeats, clock=time.process_time)

    enc = cpu(lambda: _encode(emb, codes, valid, 8))
    w_emb = _encode(emb, codes, valid, 8)
    grad = cpu(lambda: _time_gradient(emb, codes, valid, w_emb, score, col_step, int(col_step.max()) + 1))
    print(f"{config}: one encoder pass {enc:.2f} s CPU, the minutes' forward and backward pass {grad:.2f} s CPU "
          f"({grad / enc:.1f} encoder passes), {threads} threads, best of {repeats}")


def _run_child(impl: str, mode: str, ckpt: Path, edf: Path, args: argparse.Namespace, ref_dir: Path | None,
               tmp: Path) -> dict:
    result = tmp / f"{impl}_{mode}.json"
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--ckpt", str(ckpt), "--edf", str(edf),
           "--threads", str(args.threads), "--result", str(result)]
    if args.task:
        cmd += ["--task", args.task, "--probes", str(args.probes)]
    env = dict(os.environ)
    if impl == "reference":
        env["PYTHONPATH"] = os.pathsep.join([str(ref_dir), env.get("PYTHONPATH", "")])
    subprocess.run(cmd, check=True, env=env)
    return json.loads(result.read_text())


def _agreement(cur: dict, ref: dict) -> str:
    import numpy as np

    def maxdiff(key: str) -> float:
        a, b = np.array(cur[key], float), np.array(ref[key], float)
        both = np.isfinite(a) & np.isfinite(b)
        if (np.isfinite(a) != np.isfinite(b)).any():
            return float("inf")
        return float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0

    t_cur, t_ref = np.array(cur["time"], float), np.array(ref["time"], float)
    ok = np.isfinite(t_cur) & np.isfinite(t_ref)
    r = float(np.corrcoef(t_cur[ok], t_ref[ok])[0, 1]) if ok.sum() > 2 else float("nan")
    same_top = int(np.nanargmax(t_cur)) == int(np.nanargmax(t_ref))
    scale = float(np.abs(t_ref[ok]).max()) if ok.any() else 0.0
    rel = float(np.abs(t_cur[ok] - t_ref[ok]).max()) / scale if scale > 0 else float("nan")
    return (f"|Δ| channel {maxdiff('channel'):.2e}, region {maxdiff('region'):.2e}, band {maxdiff('band'):.2e}, "
            f"baseline {abs(cur['baseline'] - ref['baseline']):.2e}; time: r {r:.3f}, same top minute "
            f"{same_top}, max |Δ| / max |ref| {rel:.3f} (ref range {np.nanmin(t_ref):.3g}..{np.nanmax(t_ref):.3g})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="base")
    ap.add_argument("--minutes", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reference", default=DEFAULT_REFERENCE, help="git revision to compare with ('' : none)")
    ap.add_argument("--modes", default="regions,channels")
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--probes", type=Path)
    ap.add_argument("--task")
    ap.add_argument("--edf", type=Path)
    ap.add_argument("--pass-cost", action="store_true",
                    help="Only time one encoder pass and the minutes' gradient pass on the session's codes.")
    ap.add_argument("--linear-check", action="store_true",
                    help="Only compare the regions' and bands' exact drops with a first-order estimate through the "
                         "encoder (with --checkpoint, --probes, --task, --edf).")
    # the child's options
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("CLEF_DEID_SALT", "bench")
    if args.child:
        args.edf = str(args.edf)
        _child(args)
        return
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= {"regions", "channels"}:
        ap.error("--modes: regions and/or channels expected")
    if bool(args.checkpoint) != bool(args.task) or (args.task and not (args.probes and args.edf)):
        ap.error("--checkpoint, --task, --probes and --edf go together")
    if args.linear_check:
        if not args.task:
            ap.error("--linear-check needs --checkpoint, --probes, --task and --edf")
        _linear_check(args.checkpoint, args.edf, args.probes, args.task, args.threads)
        return
    from common import make_file

    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        if args.checkpoint:
            ckpt, edf = args.checkpoint, args.edf
        else:
            from clef.factory import save_random_checkpoint

            ckpt = save_random_checkpoint(args.config, tmp / f"st_{args.config}")
            edf = make_file(ROOT / "bench" / "out" / f"eeg_{args.minutes}min_256Hz.edf", args.minutes * 60, 256)
        if args.pass_cost:
            _pass_cost(args.config if not args.checkpoint else str(ckpt), ckpt, edf, args.threads)
            return
        ref_dir = None
        if args.reference:
            ref_dir = tmp / "reference"
            ref_dir.mkdir()
            archive = subprocess.run(["git", "archive", args.reference, "clef", "tokenizer"], cwd=ROOT, check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(ref_dir)], input=archive, check=True)
        what = f"{args.task} of {ckpt}" if args.task else f"{args.config}, random weights, similarity"
        print(f"== explanation of {edf.name} ({what}), {args.threads} threads, load average "
              f"{os.getloadavg()[0]:.1f} at the start")
        for mode in modes:
            cur = _run_child("current", mode, ckpt, edf, args, ref_dir, tmp)
            print(f"{mode:8s} current  : {cur['wall_s']:7.1f} s wall, {cur['cpu_s']:7.1f} s CPU, "
                  f"{cur['n_variants']} variants, peak RSS {cur['peak_rss_mb']:.0f} MB (read {cur['read_s']:.1f} s)",
                  flush=True)
            if ref_dir is None:
                continue
            ref = _run_child("reference", mode, ckpt, edf, args, ref_dir, tmp)
            print(f"{mode:8s} reference: {ref['wall_s']:7.1f} s wall, {ref['cpu_s']:7.1f} s CPU, "
                  f"{ref['n_variants']} variants, peak RSS {ref['peak_rss_mb']:.0f} MB (read {ref['read_s']:.1f} s)")
            print(f"{mode:8s} reference / current: {ref['wall_s'] / cur['wall_s']:.1f}x wall, "
                  f"{ref['cpu_s'] / cur['cpu_s']:.1f}x CPU; {_agreement(cur, ref)}", flush=True)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
