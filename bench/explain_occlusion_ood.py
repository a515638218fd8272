"""Is a hemisphere taken away as absent an input the model has seen? (issue 19, "Explanations")

For sessions of a study's hospital (by default the lateralised positives *after* the first
``--skip`` of each finding, so the sessions ``bench/explain_validity.py`` reports are not
the ones the occlusion was chosen on), each hemisphere is taken away both ways of
:func:`clef.explain.explain` (``hemisphere_baseline``: ``absent``, zero input through the
channel mask; ``mirror``, the side's electrodes replaced by their homologues,
:func:`clef.explain.mirror_hemisphere`) and the occluded session is compared with what the
model saw in training:

* ``db_below_0``: the share of the session's real spectrogram values (present channels,
  valid frames, after the contract's clip) below 0 dB, where an absent channel's input
  sits (zero scaled input is 0 dB): 0 when zero input is the lowest power, 0.5 when it
  is the median;
* ``rare``: the share of the tokens of the occluded side's token rows (the ``hemispheres``
  layout: the left rows first) whose code is rare in the study's tokens table (fewer than
  ``--rare`` of its valid tokens), against the same share of the session itself;
* ``nn``: the cosine distance of the occluded session's embedding to the nearest cached
  embedding of another session of the study, over the same distance of the session itself.

Run (1 thread, niced)::

    nice -n 10 python bench/explain_occlusion_ood.py --study bench/out/study_200_clinical --skip 15 \\
        --per-finding 10 --threads 1
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np
import polars as pl
import torch

LATERAL = ("asymmetry", "focal_slowing", "ied_focal")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", type=Path, default=Path("bench/out/study_200_clinical"))
    ap.add_argument("--model", default="stage1")
    ap.add_argument("--skip", type=int, default=15, help="Positives per finding left out (the reported ones).")
    ap.add_argument("--per-finding", type=int, default=10)
    ap.add_argument("--rare", type=float, default=1e-4, help="A code is rare below this share of valid tokens.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/out/explain_validity_clinical/ood.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from clef.embedding import Embedder
    from clef.explain import channel_regions, mirror_hemisphere, read_spectrogram
    from clef.model import aggregate_windows
    from clef.synthetic.hospital import load_truth
    from tokenizer.windows import split_windows, token_mask_np

    study, hospital = args.study, args.study / "hospital"
    emb = Embedder(study / args.model)
    tok = emb.tokenizer
    gf, gt = tok.grid
    channels = tuple(emb.contract.channels)
    regions = channel_regions(channels)

    counts = np.zeros(int(emb.cfg.model.vocab_size), np.int64)
    for f in sorted(glob.glob(str(study / "tokens" / "tokens-*.parquet"))):
        df = pl.read_parquet(f, columns=["codes", "token_mask"])
        for c, m in zip(df["codes"].to_list(), df["token_mask"].to_list()):
            c, m = np.asarray(c), np.asarray(m, bool)
            counts += np.bincount(c[m], minlength=counts.size)
    rare_code = counts < args.rare * counts.sum()
    cache = pl.read_parquet(study / "bench_cache" / "embeddings" / f"{args.model}-{emb.model_id}.parquet")
    ref = np.stack(cache["vector"].to_list()).astype(np.float64)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    ref_ids = cache["session_id"].to_list()

    truth = load_truth(hospital)
    flat = truth.select("session_id", "path", "findings").explode("findings").unnest("findings")
    rows = []
    for finding in LATERAL:
        pos = (flat.filter((pl.col("name") == finding) & pl.col("side").is_in(["L", "R"]))
               .unique("session_id").sort("session_id").slice(args.skip, args.per_finding))
        for r in pos.iter_rows(named=True):
            spec = read_spectrogram(hospital / r["path"], emb, threads=args.threads)
            cm, fm = spec.channel_mask.astype(bool), spec.frame_mask.astype(bool)
            vals = np.clip(spec.values[cm][:, :, fm].astype(np.float32), *emb.contract.spectrogram.clip_db)
            x0, m0 = split_windows(spec.values, fm, cm, tok.spec)
            valid = token_mask_np(m0, (gf, gt))
            variants = {"session": x0}
            for side in ("left", "right"):
                xa = x0.copy()
                xa[:, [i for i in regions[side] if cm[i]]] = 0.0
                variants[f"absent_{side}"] = xa
                variants[f"mirror_{side}"] = mirror_hemisphere(x0, channels, side)
            own = ref_ids.index(r["session_id"]) if r["session_id"] in ref_ids else None
            others = np.delete(ref, own, axis=0) if own is not None else ref
            out = {"finding": finding, "session_id": r["session_id"], "side": r["side"],
                   "db_below_0": float((vals < 0).mean())}
            with torch.inference_mode():
                for name, x in variants.items():
                    codes, _ = tok.model.tokenize(torch.from_numpy(x).to(tok.device), torch.from_numpy(m0).to(tok.device))
                    c = codes.cpu().numpy()
                    side_rows = slice(0, gf // 2) if name.endswith("left") else slice(gf // 2, gf)
                    sel = valid[:, side_rows] if name != "session" else valid
                    cc = c[:, side_rows] if name != "session" else c
                    w = emb.encoder.embed_windows(torch.from_numpy(c).long(), torch.from_numpy(valid),
                                                  emb.context_columns).float()
                    e = aggregate_windows(w, torch.from_numpy(valid.reshape(len(c), -1).sum(1))).numpy()
                    e = e.astype(np.float64) / np.linalg.norm(e)
                    out[f"{name}_rare"] = float(rare_code[cc[sel]].mean())
                    out[f"{name}_nn"] = float(1 - (others @ e).max())
            for name in variants:
                if name != "session":
                    out[f"{name}_nn_ratio"] = out[f"{name}_nn"] / max(out["session_nn"], 1e-12)
            rows.append(out)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    keys = ["db_below_0", "session_rare"] + [f"{k}_{s}_{m}" for m in ("rare", "nn_ratio")
                                             for k in ("absent", "mirror") for s in ("left", "right")]
    print(f"{len(rows)} sessions; rare codes: {int(rare_code.sum())} of {rare_code.size} (< {args.rare:g} of "
          f"{int(counts.sum())} valid training tokens)")
    print("| measure | median | 10-90 % |\n|---|---|---|")
    for k in keys:
        v = np.array([r[k] for r in rows])
        print(f"| {k} | {np.median(v):.3f} | {np.percentile(v, 10):.3f}-{np.percentile(v, 90):.3f} |")


if __name__ == "__main__":
    main()
