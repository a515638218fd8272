"""Structured fake token folders (no tokenizer needed) for session-transformer tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from tokenizer.tokens import TOKENS_SCHEMA


def write_fake_tokens(out: Path, n_sessions: int = 24, grid: tuple[int, int] = (4, 16), vocab: int = 64,
                      seed: int = 0, windows: int = 2) -> Path:
    """Tokens with learnable structure: each session has a class (0/1) that shifts its codes,
    and codes run in short constant stretches along time, so masked tokens are predictable
    from their neighbours. Returns ``out``; session classes in ``out/classes.json``."""
    rng = np.random.default_rng(seed)
    gf, gt = grid
    rows, classes = [], {}
    for s in range(n_sessions):
        sha = f"{s:064x}"
        cls = int(s % 2)
        classes[sha] = cls
        for w in range(windows):
            base = rng.integers(0, vocab // 4, size=(gf, 1)) + cls * (vocab // 2)
            stretch = (np.arange(gt)[None, :] // 4 + rng.integers(0, 3, size=(gf, 1))) % (vocab // 4)
            codes = ((base + stretch) % vocab).astype(np.int16)
            noise = rng.random((gf, gt)) < 0.05
            codes[noise] = rng.integers(0, vocab, noise.sum())
            mask = np.ones((gf, gt), bool)
            if w == windows - 1:
                mask[:, gt - 3:] = False
            rows.append({"source_sha256": sha, "path": f"s{s}.edf", "window": w, "n_windows": windows,
                         "start_s": 1280.0 * w, "n_valid_frames": 1280, "codes": codes.reshape(-1).tolist(),
                         "token_mask": mask.reshape(-1).tolist(), "grid_freq": gf, "grid_time": gt, "tokenizer": "fake"})
    out.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema=TOKENS_SCHEMA).write_parquet(out / "tokens-00000.parquet")
    (out / "manifest.json").write_text(json.dumps({"schema": "clef.tokens/1", "weights_sha256": "fake", "grid": list(grid),
                                                   "n_codes": vocab, "window_s": 1280.0, "checkpoint": ""}))
    (out / "classes.json").write_text(json.dumps(classes))
    return out
