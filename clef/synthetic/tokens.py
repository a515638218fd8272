"""Token folders with a planted class, written without a tokenizer.

What the learning-signal test of the session transformer and ``bench/pretrain_margin.py``
pretrain on: tokens whose class only masked-token pretraining can find.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from tokenizer.tokens import TOKENS_SCHEMA


def write_topic_tokens(out: Path, n_sessions: int = 64, grid: tuple[int, int] = (4, 16), vocab: int = 512,
                       n_topics: int = 16, rate: float = 0.25, seed: int = 0) -> Path:
    """Tokens whose planted class lives in code *co-occurrence*, not in a few codes.

    The codebook is split into ``n_topics`` disjoint topics of ``vocab / n_topics`` codes.
    Each window is a mixture of three random nuisance topics (weights 0.5/0.3/0.2); every
    run of 4 time steps of a frequency row draws 4 codes of one topic. In class-1
    sessions a run comes from topic 0 with probability ``rate``. The class signal is then
    spread thinly over 32 codes among 512, which a random encoder (a random projection of
    the code histogram into fewer dimensions) keeps only partly, while masked-token
    pretraining, which must learn which codes co-occur to predict a masked one, groups
    them.

    Parameters
    ----------
    out : Path
        Tokens folder to write (``tokens-00000.parquet``, ``manifest.json``).
    n_sessions : int
        Sessions, alternately of class 0 and 1; one window each.
    grid : tuple of int
        Token grid (frequency rows, time steps).
    vocab, n_topics : int
        Codebook size and number of disjoint topics it is split into.
    rate : float
        Probability that a run of a class-1 session comes from the planted topic.
    seed : int
        Seed of the topics and of every draw.

    Returns
    -------
    Path
        ``out``; the class of each session (by its ``source_sha256``) is in ``out/classes.json``.
    """
    rng = np.random.default_rng(seed)
    gf, gt = grid
    topics = rng.permutation(vocab).reshape(n_topics, -1)
    rows, classes = [], {}
    for s in range(n_sessions):
        sha = f"{s:064x}"
        cls = int(s % 2)
        classes[sha] = cls
        nuisance = rng.choice(np.arange(1, n_topics), size=3, replace=False)
        codes = np.empty((gf, gt), np.int16)
        for f in range(gf):
            for t0 in range(0, gt, 4):
                topic = nuisance[rng.choice(3, p=[0.5, 0.3, 0.2])]
                if cls == 1 and rng.random() < rate:
                    topic = 0
                codes[f, t0:t0 + 4] = rng.choice(topics[topic], 4)
        rows.append({"source_sha256": sha, "path": f"s{s}.edf", "window": 0, "n_windows": 1, "start_s": 0.0,
                     "n_valid_frames": 1280, "codes": codes.reshape(-1).tolist(),
                     "token_mask": np.ones(gf * gt, bool).tolist(), "grid_freq": gf, "grid_time": gt,
                     "tokenizer": "fake"})
    out.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema=TOKENS_SCHEMA).write_parquet(out / "tokens-00000.parquet")
    (out / "manifest.json").write_text(json.dumps({"schema": "clef.tokens/1", "weights_sha256": "fake",
                                                   "grid": list(grid), "n_codes": vocab, "window_s": 1280.0,
                                                   "checkpoint": ""}))
    (out / "classes.json").write_text(json.dumps(classes))
    return out
