"""Frozen-embedding probes: a standardised logistic regression and CLEF's small MLP.

Both probes standardise their inputs with the training sessions' mean and scale;
missing values (NaN, e.g. band powers of an absent electrode) are imputed with the
training mean, i.e. 0 after standardisation, and a constant feature gets scale 1.

This module is the one scorer and the one reader of the probe JSON format: the
benchmark writes probes with :meth:`LogisticProbe.save`, the HTTP service reads them
with :func:`load_probes` and scores with the same :meth:`LogisticProbe.predict_proba`.

Serving format (``RESULTS_DIR/probes/[<model>/]<task>.json``, no pickles)::

    {"format_version": 1, "kind": "logistic", "task": ..., "category": ..., "model": ...,
     "model_id": ... or null, "dim": d, "coef": [d floats], "intercept": float,
     "mean": [d floats], "scale": [d floats], "nan_policy": "impute_mean", ...}

    probability = 1 / (1 + exp(-(((x - mean) / scale) · coef + intercept)))

with NaN entries of ``(x - mean) / scale`` replaced by 0 (:meth:`LogisticProbe.predict_proba`).
``coef`` and ``intercept`` are required; ``mean`` and ``scale`` default to 0 and 1;
``"schema": "clef.probe/1"`` (an older writer's tag) is accepted in place of
``format_version``. The service reads ``RESULTS_DIR/probes/*.json`` only (one model's
probes); ``auroc`` (or ``auroc_test``), ``category``, ``n_train``, ``description`` and
``model`` are shown to its users.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark_tasks.config import MLPConfig
from tokenizer.atomic import write_json_atomic

__all__ = [
    "PROBE_FORMAT_VERSION",
    "LogisticProbe",
    "MLPProbe",
    "TaskProbe",
    "cross_validated_auroc",
    "fit_logistic_probe",
    "fit_mlp_probe",
    "load_probe",
    "load_probes",
    "save_probe",
    "standardiser",
]

log = logging.getLogger(__name__)

PROBE_FORMAT_VERSION = 1
#: The tag an older writer put in place of ``format_version``; still read.
PROBE_SCHEMA = "clef.probe/1"
#: Metadata of a probe file shown to the service's users.
_SHOWN = ("category", "auroc", "n_train", "description", "model")
_TASK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")
#: Logits are clipped here before the sigmoid: exp(60) is far from overflow, and the
#: clip moves no probability by more than 1e-26 (sigmoid(60) is 1 in double precision).
_LOGIT_CLIP = 60.0


def cross_validated_auroc(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, n_splits: int = 5, c: float = 0.1,
                          seed: int = 0) -> float:
    """Out-of-fold AUROC of a standardised logistic-regression probe, folds grouped by patient.

    Parameters
    ----------
    x : ndarray, (n, dim)
        Frozen embeddings.
    y : ndarray, (n,)
        Binary labels.
    groups : ndarray, (n,)
        Patient ids: no patient is in a training and a test fold at once.
    n_splits : int
        Folds.
    c : float
        Inverse L2 regularisation strength.
    seed : int

    Returns
    -------
    float
        AUROC of the pooled out-of-fold probabilities.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y).astype(int)
    if len(np.unique(y)) != 2:
        raise ValueError(f"probe needs both classes, found labels {np.unique(y).tolist()}")
    pred = np.zeros(len(y))
    for tr, te in GroupKFold(n_splits=n_splits).split(x, y, groups):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
        clf.fit(x[tr], y[tr])
        pred[te] = clf.predict_proba(x[te])[:, 1]
    return float(roc_auc_score(y, pred))


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NaN-aware column mean and scale of training features (scale 1 for constant columns)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, scale = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
    return mean, scale


def _standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = (np.asarray(x, dtype=np.float64) - mean) / scale
    return np.where(np.isfinite(z), z, 0.0)


def _check_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(int)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features (n, dim) and labels (n,) expected, found {x.shape} and {y.shape}")
    if len(np.unique(y)) != 2:
        raise ValueError(f"a probe needs both classes in training, found labels {np.unique(y).tolist()}")
    return x, y


@dataclass(frozen=True)
class LogisticProbe:
    """A fitted logistic probe on standardised features.

    Attributes
    ----------
    coef : ndarray, (dim,)
    intercept : float
    mean, scale : ndarray, (dim,)
        Standardisation of the inputs.
    """

    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.coef.shape[0])

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Logits ``((x - mean) / scale) · coef + intercept`` (NaN inputs count as the mean)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features of shape (n, {self.dim}) expected, found {x.shape}")
        return _standardise(x, self.mean, self.scale) @ self.coef + self.intercept

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of the positive class, ``(n,)``.

        Logits are clipped to ±60 first: an embedding far outside the training range
        would otherwise overflow ``exp`` (a RuntimeWarning, and an ``inf`` on the way to
        a probability of 0), while the clip moves no probability by more than 1e-26.
        """
        return 1.0 / (1.0 + np.exp(-np.clip(self.decision_function(x), -_LOGIT_CLIP, _LOGIT_CLIP)))

    def to_dict(self, **meta: Any) -> dict[str, Any]:
        """The JSON-ready serving form (keys ``coef``, ``intercept``, ``mean``, ``scale`` + ``meta``)."""
        return {"format_version": PROBE_FORMAT_VERSION, "kind": "logistic", **meta, "dim": self.dim,
                "coef": [float(v) for v in self.coef], "intercept": float(self.intercept),
                "mean": [float(v) for v in self.mean], "scale": [float(v) for v in self.scale],
                "nan_policy": "impute_mean"}

    def save(self, path: str | os.PathLike[str], **meta: Any) -> Path:
        """Write the probe as JSON, atomically."""
        return write_json_atomic(self.to_dict(**meta), path)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogisticProbe:
        """Rebuild a probe from :meth:`to_dict` output (see the module docstring for the format).

        Raises
        ------
        ValueError
            Another format or kind, missing keys, inconsistent lengths, non-finite values
            or a scale that is not positive.
        """
        if d.get("schema", PROBE_SCHEMA) != PROBE_SCHEMA:
            raise ValueError(f"probe JSON: schema {PROBE_SCHEMA} expected, found {d.get('schema')!r}")
        if d.get("format_version", PROBE_FORMAT_VERSION) != PROBE_FORMAT_VERSION:
            raise ValueError(f"probe JSON: format_version {PROBE_FORMAT_VERSION} expected, found "
                             f"{d.get('format_version')!r}")
        if d.get("kind", "logistic") != "logistic":
            raise ValueError(f"probe JSON: kind 'logistic' expected, found {d.get('kind')!r}")
        missing = [k for k in ("coef", "intercept") if k not in d]
        if missing:
            raise ValueError(f"probe JSON: expected keys coef, intercept (mean, scale optional); missing {missing}")
        coef = np.asarray(d["coef"], dtype=np.float64)
        mean = np.asarray(d["mean"], dtype=np.float64) if "mean" in d else np.zeros(coef.shape)
        scale = np.asarray(d["scale"], dtype=np.float64) if "scale" in d else np.ones(coef.shape)
        if not (coef.ndim == 1 and coef.shape == mean.shape == scale.shape):
            raise ValueError(f"probe JSON: coef, mean and scale must be vectors of one length, found "
                             f"{coef.shape}, {mean.shape}, {scale.shape}")
        intercept = float(d["intercept"])
        if not np.isfinite(np.concatenate([coef, mean, scale, [intercept]])).all():
            raise ValueError("probe JSON: non-finite values")
        if np.any(scale <= 0):
            raise ValueError("probe JSON: scale must be > 0")
        return cls(coef, intercept, mean, scale)


def load_probe(path: str | os.PathLike[str]) -> tuple[LogisticProbe, dict[str, Any]]:
    """Read a probe JSON: the probe and its metadata (task, category, model ...).

    Raises
    ------
    ValueError
        Unreadable file or not a probe (:meth:`LogisticProbe.from_dict`).
    """
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: not a probe JSON ({exc})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{p}: expected a JSON object, found {type(d).__name__}")
    try:
        probe = LogisticProbe.from_dict(d)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{p}: {exc}") from None
    return probe, {k: v for k, v in d.items() if k not in ("coef", "mean", "scale")}


@dataclass(frozen=True)
class TaskProbe:
    """A served probe: the task it predicts, its :class:`LogisticProbe` and what users see of it.

    Call it on ``(dim,)`` (a float) or ``(n, dim)`` (an array) embeddings.

    Attributes
    ----------
    task : str
    probe : LogisticProbe
    model_id : str or None
        The embedding model the probe was fitted on.
    info : dict
        Fields shown to users (``category``, ``auroc``, ...).
    """

    task: str
    probe: LogisticProbe
    model_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Embedding width."""
        return self.probe.dim

    def __call__(self, x: np.ndarray) -> float | np.ndarray:
        """Probability of the positive class."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.dim:
            raise ValueError(f"probe {self.task}: embeddings of width {self.dim} expected, found {x.shape[-1]}")
        if x.ndim == 1:
            return float(self.probe.predict_proba(x[None])[0])
        return self.probe.predict_proba(x)


def _task_probe(path: Path) -> TaskProbe:
    probe, meta = load_probe(path)
    task = str(meta.get("task") or path.stem)
    if not _TASK.match(task):
        raise ValueError(f"task name of letters, digits and _.:+- expected, found {task!r}")
    info = {k: meta[k] for k in _SHOWN if k in meta}
    if "auroc" not in info and isinstance(meta.get("auroc_test"), (int, float)):
        info["auroc"] = float(meta["auroc_test"])
    return TaskProbe(task, probe, meta.get("model_id"), info)


def load_probes(results_dir: str | os.PathLike[str] | None, *, model_id: str | None = None,
                dim: int | None = None) -> dict[str, TaskProbe]:
    """The probes of ``RESULTS_DIR/probes/*.json`` that can score a model's embeddings.

    An unreadable probe, or one fitted on another model or width, is skipped with a
    warning naming the file and the reason.

    Parameters
    ----------
    results_dir : path or None
        Benchmark results folder; None, missing or empty gives ``{}``.
    model_id : str, optional
        Keep only probes fitted on this model (probes without ``model_id`` are kept).
    dim : int, optional
        Keep only probes of this width.

    Returns
    -------
    dict
        ``{task: TaskProbe}``, sorted by task.
    """
    if results_dir is None:
        return {}
    folder = Path(results_dir) / "probes"
    if not folder.is_dir():
        log.info("no probes folder in %s: no tasks", results_dir)
        return {}
    probes: dict[str, TaskProbe] = {}
    for f in sorted(folder.glob("*.json")):
        try:
            p = _task_probe(f)
        except ValueError as exc:
            log.warning("probe %s skipped: %s", f.name, exc)
            continue
        if model_id is not None and p.model_id not in (None, model_id):
            log.warning("probe %s skipped: fitted on model %s, serving %s", f.name, p.model_id, model_id)
            continue
        if dim is not None and p.dim != dim:
            log.warning("probe %s skipped: width %d expected, found %d", f.name, dim, p.dim)
            continue
        if p.task in probes:
            log.warning("probe %s skipped: task %s defined twice", f.name, p.task)
            continue
        probes[p.task] = p
    return dict(sorted(probes.items()))


def save_probe(results_dir: str | os.PathLike[str], probe: TaskProbe) -> Path:
    """Write a served probe where :func:`load_probes` reads it (``RESULTS_DIR/probes/<task>.json``)."""
    return probe.probe.save(Path(results_dir) / "probes" / f"{probe.task}.json", task=probe.task,
                            model_id=probe.model_id, **probe.info)


def fit_logistic_probe(x: np.ndarray, y: np.ndarray, *, c: float = 0.1, seed: int = 0) -> LogisticProbe:
    """Fit a standardised, L2-regularised logistic probe.

    Parameters
    ----------
    x : ndarray, (n, dim)
    y : ndarray, (n,)
    c : float
        Inverse regularisation strength.
    seed : int

    Raises
    ------
    ValueError
        Bad shapes or a single class.
    """
    from sklearn.linear_model import LogisticRegression

    x, y = _check_xy(x, y)
    mean, scale = standardiser(x)
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit(_standardise(x, mean, scale), y)
    return LogisticProbe(clf.coef_[0].astype(np.float64), float(clf.intercept_[0]), mean, scale)


@dataclass
class MLPProbe:
    """Fitted 2-layer MLP probes, one per seed, as stacked weights (evaluation only).

    Attributes
    ----------
    w1 : ndarray, (seeds, dim, hidden)
    b1 : ndarray, (seeds, hidden)
    w2 : ndarray, (seeds, hidden)
    b2 : ndarray, (seeds,)
    mean, scale : ndarray, (dim,)
    seeds : tuple of int
    """

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    seeds: tuple[int, ...]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of the positive class per seed, ``(seeds, n)``."""
        import torch

        z = torch.from_numpy(_standardise(x, self.mean, self.scale).astype(np.float32))
        w1, b1, w2, b2 = (torch.from_numpy(a) for a in (self.w1, self.b1, self.w2, self.b2))
        with torch.no_grad():
            h = torch.nn.functional.gelu(torch.einsum("nd,sdh->snh", z, w1) + b1[:, None, :])
            logit = torch.einsum("snh,sh->sn", h, w2) + b2[:, None]
        return torch.sigmoid(logit).double().numpy()


def fit_mlp_probe(x: np.ndarray, y: np.ndarray, config: MLPConfig | None = None, *,
                  seeds: tuple[int, ...] | list[int] = (0,)) -> MLPProbe:
    """Fit CLEF's small probe, ``Linear → GELU → Dropout → Linear`` with Adam and BCE, once per seed.

    The seeds' probes are trained side by side as one stacked model (the loss is the
    sum of the per-seed losses and Adam is element-wise, so each seed's training is
    exactly that of a probe trained alone, at a third of the cost for three seeds).
    Steps: ``max(epochs * ceil(n / batch_size), min_steps)`` minibatch steps over
    reshuffled epochs (see :class:`~benchmark_tasks.config.MLPConfig`).

    Parameters
    ----------
    x : ndarray, (n, dim)
    y : ndarray, (n,)
    config : MLPConfig, optional
    seeds : sequence of int
        One probe per seed: its initialisation, dropout and batch order.
    """
    import torch
    import torch.nn.functional as F

    cfg = config or MLPConfig()
    x, y = _check_xy(x, y)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("fit_mlp_probe needs at least one seed")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: a second intra-op thread only spins (and thrashes on a busy machine)
    try:
        mean, scale = standardiser(x)
        n, d = x.shape
        h = cfg.hidden
        gens = [torch.Generator().manual_seed(s) for s in seeds]

        def uniform(shape: tuple[int, ...], fan_in: int, g: torch.Generator) -> torch.Tensor:
            bound = 1.0 / fan_in**0.5  # nn.Linear's default initialisation
            return (torch.rand(shape, generator=g) * 2 - 1) * bound

        params = [torch.stack([uniform(shape, fan_in, g) for g in gens]).requires_grad_()
                  for shape, fan_in in (((d, h), d), ((h,), d), ((h,), h), ((), h))]
        w1, b1, w2, b2 = params
        xt = torch.from_numpy(_standardise(x, mean, scale).astype(np.float32))
        yt = torch.from_numpy(y.astype(np.float32))
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
        bs = min(cfg.batch_size, n)
        steps = max(cfg.epochs * -(-n // bs), cfg.min_steps)
        drops = [torch.Generator().manual_seed(s + 7919) for s in seeds]
        perms: list[torch.Tensor] = []
        pos = n  # position in the current epoch's permutations
        for _ in range(steps):
            if pos + bs > n:
                perms = [torch.randperm(n, generator=g) for g in gens]
                pos = 0
            idx = torch.stack([p[pos:pos + bs] for p in perms])  # (k, bs)
            pos += bs
            xb, yb = xt[idx], yt[idx]  # (k, bs, d), (k, bs)
            hid = F.gelu(torch.baddbmm(b1[:, None, :], xb, w1))
            if cfg.dropout > 0:
                u = torch.stack([torch.rand(hid.shape[1:], generator=g) for g in drops])
                hid = hid * ((u >= cfg.dropout).to(hid.dtype) / (1.0 - cfg.dropout))
            logit = torch.einsum("sbh,sh->sb", hid, w2) + b2[:, None]
            loss = F.binary_cross_entropy_with_logits(logit, yb, reduction="none").mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return MLPProbe(*(p.detach().numpy().copy() for p in params), mean=mean, scale=scale, seeds=seeds)
    finally:
        torch.set_num_threads(threads)
