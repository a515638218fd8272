"""Pretrained vs randomly initialised session encoders on a class planted in code co-occurrence.

Usage::

    python bench/pretrain_margin.py [--seeds 0,1,2,3] [--steps 1000] [--random 3] [--out DIR]

The measurement behind the margin that
``tests/test_session_transformer.py::test_pretrained_embeddings_beat_a_random_encoder_on_a_planted_class``
asserts (the test runs data seed 0 only), over several data seeds. Per seed: the tokens of
:func:`clef.synthetic.tokens.write_topic_tokens` (64 sessions, the class in code
co-occurrence), the test's preset of ``tiny`` (dim 64, depth 2) pretrained for ``--steps``
steps on one thread, then the out-of-fold AUROC of the 5-fold logistic probe
(:func:`benchmark_tasks.probes.cross_validated_auroc`) on the session embeddings of the
pretrained encoder and of ``--random`` randomly initialised encoders of the same
architecture (torch seeds 0, 1, ...). Printed: one line per data seed, then the range of
each and the smallest gap (pretrained minus the mean of the random encoders), and the mean
gap over the data seeds with its 95 % Student-t interval.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

#: The test's preset of ``tiny`` (tests/test_session_transformer.py, SMALL).
SMALL = {"model": {"dim": 64, "depth": 2, "heads": 4}, "train": {"batch_size": 8, "checkpoint_every": 50},
         "optim": {"lr": 2e-3, "warmup_steps": 10}}


def session_tokens(tokens_dir: Path) -> list:
    """One ``tokenizer.tokens.Tokens`` per session of a tokens folder, in session-hash order."""
    from tokenizer.tokens import Tokens, read_tokens

    df = read_tokens(tokens_dir).sort("source_sha256", "window", maintain_order=True)
    out = []
    for (sha,), g in df.group_by("source_sha256", maintain_order=True):
        gf, gt = int(g["grid_freq"][0]), int(g["grid_time"][0])
        out.append(Tokens(codes=np.array(g["codes"].to_list(), np.int16).reshape(-1, gf, gt),
                          token_mask=np.array(g["token_mask"].to_list(), bool).reshape(-1, gf, gt),
                          n_valid_frames=g["n_valid_frames"].to_numpy(), source_sha256=sha,
                          source_path=str(g["path"][0]), window_s=1280.0))
    return out


def one_seed(seed: int, steps: int, n_random: int, work: Path) -> tuple[float, list[float]]:
    """AUROC of the pretrained encoder and of each random one, for data seed ``seed``."""
    import torch

    from benchmark_tasks.probes import cross_validated_auroc
    from clef.config import SessionConfig
    from clef.embedding import Embedder
    from clef.factory import create_model
    from clef.pretrain import pretrain
    from clef.synthetic.tokens import write_topic_tokens
    from tokenizer.presets import load_preset

    tokens = write_topic_tokens(work / f"tokens_{seed}", seed=seed)
    r = pretrain(tokens, load_preset(SessionConfig, "tiny", SMALL), work / f"st_{seed}", max_steps=steps,
                 trainer_kwargs={"enable_progress_bar": False})
    classes = json.loads((tokens / "classes.json").read_text())
    sessions = session_tokens(tokens)
    y = np.array([classes[s.source_sha256] for s in sessions])
    groups = np.arange(len(y))

    def auroc(emb: Embedder) -> float:
        return cross_validated_auroc(np.stack([e.vector for e in emb.embed(sessions)]), y, groups)

    pretrained = auroc(Embedder(r.checkpoint))
    random = []
    for k in range(n_random):
        emb = Embedder(r.checkpoint)
        torch.manual_seed(k)
        emb.encoder.load_state_dict(create_model(emb.cfg).state_dict())
        emb.encoder.eval()
        random.append(auroc(emb))
    return pretrained, random


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2,3", help="Data seeds of write_topic_tokens.")
    ap.add_argument("--steps", type=int, default=1000, help="Pretraining steps (the test's).")
    ap.add_argument("--random", type=int, default=3, help="Randomly initialised encoders per seed.")
    ap.add_argument("--out", type=Path, default=None, help="Working folder (default: a temporary one).")
    args = ap.parse_args()
    import logging

    import torch

    logging.getLogger("lightning").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"== pretrained vs {args.random} random encoders, test preset of 'tiny', {args.steps} steps, "
              f"logistic probe AUROC (5-fold, out of fold)")
        rows = []
        for seed in seeds:
            pre, rnd = one_seed(seed, args.steps, args.random, work)
            rows.append((pre, rnd))
            print(f"seed {seed}: {pre:.3f} vs {' '.join(f'{a:.3f}' for a in rnd)} "
                  f"(gap {pre - float(np.mean(rnd)):+.3f})", flush=True)
    pre = [p for p, _ in rows]
    rnd = [a for _, r in rows for a in r]
    gaps = [p - float(np.mean(r)) for p, r in rows]
    print(f"pretrained {min(pre):.2f}-{max(pre):.2f}, random {min(rnd):.2f}-{max(rnd):.2f} over {len(rows)} "
          f"data seeds; gap {min(gaps):+.2f} to {max(gaps):+.2f} (the test asserts >= 0.85 and a gap >= +0.10)")
    if len(gaps) > 1:
        mean, lo, hi = t_interval(gaps)
        print(f"mean gap {mean:+.3f}, 95% t interval [{lo:+.3f}, {hi:+.3f}] over {len(gaps)} data seeds")


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` and its Student-t interval.

    A t interval rather than ``benchmark_tasks.metrics.mean_ci``'s bootstrap: with a handful of
    seeds the percentile bootstrap is too narrow.
    """
    from scipy.stats import t

    v = np.asarray(values, dtype=float)
    half = float(t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return float(v.mean()), float(v.mean()) - half, float(v.mean()) + half


if __name__ == "__main__":
    main()
