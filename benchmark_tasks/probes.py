"""Frozen-embedding probes: a standardised logistic regression and CLEF's small MLP.

Both probes standardise their inputs with the training sessions' mean and scale;
missing values (NaN, e.g. band powers of an absent electrode) are imputed with the
training mean, i.e. 0 after standardisation, and a constant feature gets scale 1.

Serving format (``RESULTS_DIR/probes/[<model>/]<task>.json``, no pickles)::

    {"format_version": 1, "kind": "logistic", "task": ..., "category": ..., "model": ...,
     "model_id": ... or null, "dim": d, "coef": [d floats], "intercept": float,
     "mean": [d floats], "scale": [d floats], "nan_policy": "impute_mean", ...}

    probability = 1 / (1 + exp(-(((x - mean) / scale) · coef + intercept)))

with NaN entries of ``(x - mean) / scale`` replaced by 0 (:meth:`LogisticProbe.predict_proba`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark_tasks.config import MLPConfig

__all__ = [
    "PROBE_FORMAT_VERSION",
    "LogisticProbe",
    "MLPProbe",
    "cross_validated_auroc",
    "fit_logistic_probe",
    "fit_mlp_probe",
    "load_probe",
    "standardiser",
]

PROBE_FORMAT_VERSION = 1


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
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(x, axis=0)
            scale = np.nanstd(x, axis=0)
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
        """Probability of the positive class, ``(n,)``."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(x)))

    def to_dict(self, **meta: Any) -> dict[str, Any]:
        """The JSON-ready serving form (keys ``coef``, ``intercept``, ``mean``, ``scale`` + ``meta``)."""
        return {"format_version": PROBE_FORMAT_VERSION, "kind": "logistic", **meta, "dim": self.dim,
                "coef": [float(v) for v in self.coef], "intercept": float(self.intercept),
                "mean": [float(v) for v in self.mean], "scale": [float(v) for v in self.scale],
                "nan_policy": "impute_mean"}

    def save(self, path: str | os.PathLike[str], **meta: Any) -> Path:
        """Write the probe as JSON, atomically."""
        from benchmark_tasks.tables import write_json_atomic

        return write_json_atomic(self.to_dict(**meta), path)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogisticProbe:
        """Rebuild a probe from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            Missing keys or inconsistent lengths.
        """
        missing = [k for k in ("coef", "intercept", "mean", "scale") if k not in d]
        if missing:
            raise ValueError(f"probe JSON: expected keys coef, intercept, mean, scale; missing {missing}")
        coef, mean, scale = (np.asarray(d[k], dtype=np.float64) for k in ("coef", "mean", "scale"))
        if not (coef.ndim == 1 and coef.shape == mean.shape == scale.shape):
            raise ValueError(f"probe JSON: coef, mean and scale must be vectors of one length, found "
                             f"{coef.shape}, {mean.shape}, {scale.shape}")
        return cls(coef, float(d["intercept"]), mean, scale)


def load_probe(path: str | os.PathLike[str]) -> tuple[LogisticProbe, dict[str, Any]]:
    """Read a probe JSON: the probe and its metadata (task, category, model ...)."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: not a probe JSON ({exc})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{p}: expected a JSON object, found {type(d).__name__}")
    return LogisticProbe.from_dict(d), {k: v for k, v in d.items() if k not in ("coef", "mean", "scale")}


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

    cfg = config or MLPConfig()
    x, y = _check_xy(x, y)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("fit_mlp_probe needs at least one seed")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: a second intra-op thread only spins (and thrashes on a busy machine)
    try:
        return _fit_mlp(x, y, cfg, seeds)
    finally:
        torch.set_num_threads(threads)


def _fit_mlp(x: np.ndarray, y: np.ndarray, cfg: MLPConfig, seeds: tuple[int, ...]) -> MLPProbe:
    import torch
    import torch.nn.functional as F

    mean, scale = standardiser(x)
    n, d = x.shape
    h = cfg.hidden
    gens = [torch.Generator().manual_seed(s) for s in seeds]

    def uniform(shape: tuple[int, ...], fan_in: int, g: torch.Generator) -> torch.Tensor:
        bound = 1.0 / fan_in**0.5  # nn.Linear's default initialisation
        return (torch.rand(shape, generator=g) * 2 - 1) * bound

    w1 = torch.stack([uniform((d, h), d, g) for g in gens]).requires_grad_()
    b1 = torch.stack([uniform((h,), d, g) for g in gens]).requires_grad_()
    w2 = torch.stack([uniform((h,), h, g) for g in gens]).requires_grad_()
    b2 = torch.stack([uniform((), h, g) for g in gens]).requires_grad_()
    params = [w1, b1, w2, b2]
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
            keep = (u >= cfg.dropout).to(hid.dtype) / (1.0 - cfg.dropout)
            hid = hid * keep
        logit = torch.einsum("sbh,sh->sb", hid, w2) + b2[:, None]
        loss = F.binary_cross_entropy_with_logits(logit, yb, reduction="none").mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return MLPProbe(*(p.detach().numpy().copy() for p in params), mean=mean, scale=scale, seeds=seeds)
