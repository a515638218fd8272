"""Phenotype-probe benchmark at hospital scale: ~234 tasks on 100k sessions of synthetic embeddings.

Usage::

    python bench/probe.py [--sessions 100000] [--dim 256] [--icd-categories 78] [--seeds 3]
                          [--bootstrap 1000] [--reference-tasks 8] [--out bench/out/probe]

What is timed is what ``clef tasks generate`` and ``clef benchmark run`` do, through
the same functions (:func:`benchmark_tasks.suite.generate_suite` on a cohort table,
:func:`benchmark_tasks.run.run_benchmark` on an :class:`~benchmark_tasks.embeddings.EmbeddingSet`),
default protocol: propensity matching 1:2 with a 0.2 caliper, patient splits 70/30, a
logistic probe and the 3-seed MLP per task, 1000-resample patient bootstrap, report and
plots. Target (issue 7): the probing of ~234 tasks on 100k sessions in ≤ 10 minutes on
2 cores.

Data (stated, since it decides the cost): a synthetic cohort of ``--sessions`` sessions
of about 29% as many patients (1-6 sessions each), 4 sites, 3 care settings, ages 0-95; every
patient carries each concept (real ICD-10-CM leaf codes of ``--icd-categories``
categories plus those of the curated phenotype groups, the substances of CLEF's ATC
table, the 16 report findings) with a log-uniform prevalence between 0.2% and 8%, so
task sizes span what a hospital archive gives (tens to thousands of positives). The
embeddings (``--dim``) are a patient effect plus noise plus, for half of the concepts
(the "planted" ones), a fixed direction per concept scaled by 0.35: planted tasks must
come out above chance and the others near 0.5, which the script checks, so a fast but
wrong probe cannot pass.

Reference in the same process: the same tasks probed the naive way (scikit-learn's
``MLPClassifier`` fitted once per seed with the same architecture and epochs, and a
bootstrap that recomputes ``roc_auc_score`` per resample) on ``--reference-tasks``
tasks, and the ratio of per-task times printed.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SITES = ("north", "south", "east", "west")
SETTINGS = ("routine", "emu", "icu")


def icd_pool(n_categories: int, rng: np.random.Generator) -> list[str]:
    """Real ICD-10-CM leaf codes: one per curated phenotype prefix, plus ``n_categories`` random categories."""
    import warnings

    from ehr.codes import PHENOTYPE_GROUPS

    with warnings.catch_warnings():  # its import warns on Python 3.11+
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm as cm

    def leaf(code: str) -> str | None:
        if not cm.is_valid_item(code):
            return None
        if cm.is_leaf(code):
            return cm.add_dot(code)
        leaves = [c for c in cm.get_descendants(code) if cm.is_leaf(c)]
        return cm.add_dot(sorted(leaves)[0]) if leaves else None

    codes: set[str] = set()
    for g in PHENOTYPE_GROUPS.values():
        for p in g.prefixes:
            c = leaf(p)
            if c:
                codes.add(c)
    cats = sorted(c for c in cm.get_all_codes(with_dots=True) if cm.is_category(c) and c[0] in "ACDEFGIJKMNRS")
    for c in rng.choice(cats, size=min(n_categories, len(cats)), replace=False):
        lf = leaf(str(c))
        if lf:
            codes.add(lf)
    return sorted(codes)


def atc_pool() -> list[str]:
    """The substances (7-character codes) of CLEF's ATC table."""
    import polars as pl
    from importlib import resources

    table = pl.read_csv(resources.files("ehr").joinpath("data/atc.csv").open("rb"))
    return sorted(table.filter(pl.col("atc_code").str.len_chars() == 7)["atc_code"].to_list())


def synthetic_cohort(n_sessions: int, n_icd_categories: int, seed: int):  # noqa: ANN201 - (polars frame, concepts)
    """The cohort table (:data:`benchmark_tasks.cohort.COHORT_SCHEMA`) and each session's concept indicator matrix."""
    import polars as pl

    from benchmark_tasks.cohort import COHORT_SCHEMA
    from ehr import medication_groups_of, phenotypes_of
    from reports import REPORT_FINDINGS

    rng = np.random.default_rng(seed)
    icd, atc, findings = icd_pool(n_icd_categories, rng), atc_pool(), list(REPORT_FINDINGS)
    concepts = [("icd", c) for c in icd] + [("atc", c) for c in atc] + [("finding", f) for f in findings]
    k = len(concepts)
    per_patient = rng.integers(1, 7, size=int(n_sessions * 0.45))
    per_patient = per_patient[np.cumsum(per_patient) <= n_sessions]
    if per_patient.sum() < n_sessions:
        per_patient = np.append(per_patient, n_sessions - per_patient.sum())
    n_pat = len(per_patient)
    prevalence = np.exp(rng.uniform(math.log(0.002), math.log(0.08), size=k))
    has = rng.random((n_pat, k)) < prevalence  # patient-level concepts
    age = rng.uniform(0, 95, n_pat)
    sex = rng.choice(["F", "M"], n_pat)
    site = rng.choice(SITES, n_pat, p=[0.4, 0.3, 0.2, 0.1])
    pat_of = np.repeat(np.arange(n_pat), per_patient)
    setting = rng.choice(SETTINGS, n_sessions, p=[0.6, 0.25, 0.15])
    # a concept is active at ~85% of its patient's sessions (findings: ~60%)
    active_p = np.where(np.array([t == "finding" for t, _ in concepts]), 0.6, 0.85)
    active = has[pat_of] & (rng.random((n_sessions, k)) < active_p)
    is_icd = np.array([t == "icd" for t, _ in concepts])
    is_atc = np.array([t == "atc" for t, _ in concepts])
    is_find = ~(is_icd | is_atc)
    names = np.array([c for _, c in concepts], dtype=object)

    def lists(mask: np.ndarray, cols: np.ndarray) -> list[list[str]]:
        sub = mask[:, cols]
        nm = names[cols]
        return [list(nm[r]) for r in sub]

    icd_s, atc_s, find_s = lists(active, is_icd), lists(active, is_atc), lists(active, is_find)
    icd_p, atc_p = lists(has, is_icd), lists(has, is_atc)
    memo_p: dict[tuple[str, ...], list[str]] = {}
    memo_m: dict[tuple[str, ...], list[str]] = {}

    def groups(codes: list[str], memo: dict, fn) -> list[str]:  # noqa: ANN001
        key = tuple(codes)
        if key not in memo:
            memo[key] = sorted(fn(codes))
        return memo[key]

    cohort = pl.DataFrame({
        "session_id": [f"s{i:06d}" for i in range(n_sessions)],
        "patient_id": [f"p{p:06d}" for p in pat_of],
        "path": [None] * n_sessions,
        "site": site[pat_of].tolist(), "setting": setting.tolist(),
        "age_years": np.round(age[pat_of] + rng.uniform(0, 3, n_sessions), 1),
        "sex": sex[pat_of].tolist(), "race": [None] * n_sessions,
        "has_ehr": [True] * n_sessions, "has_report": [True] * n_sessions,
        "icd10": icd_s, "atc": atc_s,
        "icd10_ever": [icd_p[p] for p in pat_of], "atc_ever": [atc_p[p] for p in pat_of],
        "phenotypes": [groups(c, memo_p, phenotypes_of) for c in icd_s],
        "medication_groups": [groups(c, memo_m, medication_groups_of) for c in atc_s],
        "findings": find_s, "findings_possible": [[] for _ in range(n_sessions)],
    }, schema=COHORT_SCHEMA)
    return cohort, active, pat_of, concepts


def synthetic_embeddings(active: np.ndarray, pat_of: np.ndarray, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Session vectors: patient effect + noise + 0.35 × a fixed direction per planted concept; and the planted mask."""
    rng = np.random.default_rng(seed + 1)
    n, k = active.shape
    planted = rng.random(k) < 0.5
    directions = rng.standard_normal((k, dim)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    directions *= 0.35 * math.sqrt(dim) * planted[:, None]
    patient = rng.standard_normal((pat_of.max() + 1, dim)).astype(np.float32) * 0.5
    x = rng.standard_normal((n, dim), dtype=np.float32) + patient[pat_of]
    x += active.astype(np.float32) @ directions
    return x, planted


def naive_reference(suite, emb, tasks: list, seeds: int, n_boot: int) -> float:  # noqa: ANN001
    """Per-task seconds of the naive path: sklearn logistic + one MLPClassifier per seed + a per-resample AUROC loop."""
    import polars as pl
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    labels = suite.labels
    t0 = time.perf_counter()
    for task in tasks:
        g = labels.filter(pl.col("task") == task.name)
        tr, te = g.filter(pl.col("split") != "test"), g.filter(pl.col("split") == "test")
        sc = StandardScaler().fit(emb.take(tr["session_id"].to_list()))
        xtr, xte = sc.transform(emb.take(tr["session_id"].to_list())), sc.transform(emb.take(te["session_id"].to_list()))
        ytr, yte = tr["label"].to_numpy(), te["label"].to_numpy()
        scores = [LogisticRegression(C=0.1, max_iter=2000).fit(xtr, ytr).predict_proba(xte)[:, 1]]
        for s in range(seeds):
            mlp = MLPClassifier(hidden_layer_sizes=(128,), batch_size=64, learning_rate_init=1e-4,
                                max_iter=max(5, math.ceil(400 / math.ceil(len(ytr) / 64))), random_state=s)
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores.append(mlp.fit(xtr, ytr).predict_proba(xte)[:, 1])
        pats = te["patient_id"].to_numpy()
        up = np.unique(pats)
        rows_of = {p: np.flatnonzero(pats == p) for p in up}
        rng = np.random.default_rng(0)
        for sc_ in scores:
            for _ in range(n_boot):
                idx = np.concatenate([rows_of[p] for p in rng.choice(up, len(up))])
                if len(np.unique(yte[idx])) == 2:
                    roc_auc_score(yte[idx], sc_[idx])
    return (time.perf_counter() - t0) / max(len(tasks), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--icd-categories", type=int, default=78)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--reference-tasks", type=int, default=8, help="tasks probed the naive way (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "probe")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import polars as pl

    from benchmark_tasks.config import ProbeConfig
    from benchmark_tasks.embeddings import EmbeddingSet
    from benchmark_tasks.run import run_benchmark
    from benchmark_tasks.suite import generate_suite

    t0 = time.perf_counter()
    cohort, active, pat_of, concepts = synthetic_cohort(args.sessions, args.icd_categories, args.seed)
    t_cohort = time.perf_counter() - t0
    print(f"cohort: {cohort.height} sessions, {cohort['patient_id'].n_unique()} patients, {len(concepts)} concepts "
          f"({t_cohort:.1f} s)")
    t0 = time.perf_counter()
    suite = generate_suite(None, args.out / "suite.yaml", cohort=cohort, name="probe_bench", progress=True)
    t_gen = time.perf_counter() - t0
    cats = {c: sum(t.category == c for t in suite.tasks) for c in ("phenotype", "medication", "finding")}
    n_lab = suite.labels.height
    print(f"suite: {len(suite.tasks)} tasks {cats}, {n_lab} labelled rows "
          f"(median {int(np.median([t.stats.n_positive + t.stats.n_control for t in suite.tasks]))} sessions per "
          f"task) in {t_gen:.1f} s")

    x, planted = synthetic_embeddings(active, pat_of, args.dim, args.seed)
    emb = EmbeddingSet("synthetic", cohort["session_id"].to_list(), x, kind="store", source="bench/probe.py")
    cfg = ProbeConfig(seeds=args.seeds, n_bootstrap=args.bootstrap)
    t0 = time.perf_counter()
    res = run_benchmark(suite, [emb], args.out / "results", config=cfg, progress=True)
    t_run = time.perf_counter() - t0
    n_tasks = res.results["task"].n_unique()
    print(f"benchmark run: {n_tasks} tasks x (logistic + {args.seeds}-seed MLP, {args.bootstrap} bootstrap) "
          f"in {t_run:.1f} s = {t_run / 60:.2f} min ({t_run / max(n_tasks, 1):.2f} s per task); target <= 10 min: "
          f"{'met' if t_run <= 600 else 'NOT met'}")

    # validity: tasks built on a planted concept vs not (findings and single-code tasks map to one concept)
    status = {}
    for t in suite.tasks:
        if t.kind == "icd_category":
            ids = [i for i, (kind, c) in enumerate(concepts) if kind == "icd" and f"icd:{c[:3]}" in t.codes]
        elif t.kind == "finding":
            ids = [i for i, (kind, c) in enumerate(concepts) if kind == "finding" and c == t.finding]
        else:
            continue
        if ids:
            status[t.name] = bool(planted[ids].all()) if planted[ids].all() or not planted[ids].any() else None
    r = res.results.filter(pl.col("probe") == "mlp").select("task", "auroc")
    r = r.with_columns(pl.col("task").replace_strict(status, default=None, return_dtype=pl.Boolean).alias("planted"))
    for flag, name in ((True, "planted concept"), (False, "no signal")):
        a = r.filter(pl.col("planted") == flag)["auroc"].to_numpy()
        if len(a):
            print(f"  MLP AUROC, tasks on a {name}: n={len(a)} mean {a.mean():.3f} sd {a.std():.3f} "
                  f"[min {a.min():.3f}, max {a.max():.3f}]")
    if args.reference_tasks:
        sample = sorted(suite.tasks, key=lambda t: t.stats.n_positive)[:: max(1, len(suite.tasks)
                                                                              // args.reference_tasks)]
        sample = sample[:args.reference_tasks]
        t0 = time.perf_counter()
        run_benchmark(suite.subset([t.name for t in sample]), [emb], args.out / "results_sample", config=cfg,
                      plots=False)
        ours = (time.perf_counter() - t0) / len(sample)
        naive = naive_reference(suite, emb, sample, args.seeds, args.bootstrap)
        print(f"same {len(sample)} tasks (sizes spread): ours {ours:.2f} s/task, naive sklearn path {naive:.2f} "
              f"s/task: {naive / ours:.1f}x")
    print(f"total wall {t_cohort + t_gen + t_run:.0f} s (cohort {t_cohort:.0f}, generate {t_gen:.0f}, run {t_run:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
