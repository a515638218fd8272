"""Task probes saved by the benchmark, loaded as plain functions of an embedding.

Format (no pickles): ``RESULTS_DIR/probes/<task>.json``, one standardised logistic
regression per task over the frozen session embedding, as ``benchmark_tasks.probes``
writes it (``LogisticProbe.save``; ``format_version`` 1)::

    {
      "format_version": 1,               # or "schema": "clef.probe/1"; both optional
      "task": "G40_epilepsy",            # optional; default: the file stem
      "model_id": "7ac348a738caec27",    # the embedding model the probe was fitted on
      "kind": "logistic",
      "coef": [...],                     # (dim,)
      "intercept": -0.31,
      "mean": [...], "scale": [...],     # StandardScaler of the training embeddings, (dim,)
      "category": "disease",             # optional, shown by /tasks
      "auroc": 0.81                      # optional (or "auroc_test"), shown by /tasks
    }

``p = sigmoid(((x - mean) / scale) · coef + intercept)``, NaN entries of the standardised
input counting as the mean (0), as in ``benchmark_tasks.probes.LogisticProbe``. A missing or empty folder
gives no tasks; an unreadable probe, or one fitted on another model or width, is
skipped with a warning naming the file and the reason.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PROBE_SCHEMA = "clef.probe/1"
_TASK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")


@dataclass(frozen=True)
class Probe:
    """A standardised logistic-regression probe; call it on ``(dim,)`` or ``(n, dim)`` embeddings.

    Attributes
    ----------
    task : str
    coef, mean, scale : ndarray, (dim,)
    intercept : float
    model_id : str or None
    info : dict
        Optional fields shown to users (``category``, ``auroc``, ...).
    """

    task: str
    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    model_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Embedding width."""
        return int(self.coef.shape[0])

    def __call__(self, x: np.ndarray) -> float | np.ndarray:
        """Probability of the positive class."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.dim:
            raise ValueError(f"probe {self.task}: embeddings of width {self.dim} expected, found {x.shape[-1]}")
        z = np.nan_to_num((x - self.mean) / self.scale, nan=0.0) @ self.coef + self.intercept  # NaN: the mean
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
        return float(p) if np.ndim(p) == 0 else p


def _vector(d: dict[str, Any], key: str, dim: int | None) -> np.ndarray:
    if key not in d:
        raise ValueError(f"field '{key}' missing")
    v = np.asarray(d[key], dtype=np.float64)
    if v.ndim != 1 or (dim is not None and v.shape[0] != dim):
        raise ValueError(f"field '{key}' of shape ({dim if dim is not None else 'dim'},) expected, found {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"field '{key}' has non-finite values")
    return v


def parse_probe(data: dict[str, Any], default_task: str) -> Probe:
    """Build a :class:`Probe` from its JSON object.

    Raises
    ------
    ValueError
        A field is missing or malformed.
    """
    if data.get("schema", PROBE_SCHEMA) != PROBE_SCHEMA:
        raise ValueError(f"schema {PROBE_SCHEMA} expected, found {data.get('schema')!r}")
    if data.get("format_version", 1) != 1:  # benchmark_tasks.probes writes format_version 1
        raise ValueError(f"format_version 1 expected, found {data.get('format_version')!r}")
    if data.get("kind", "logistic") != "logistic":
        raise ValueError(f"kind 'logistic' expected, found {data.get('kind')!r}")
    task = str(data.get("task") or default_task)
    if not _TASK.match(task):
        raise ValueError(f"task name of letters, digits and _.:+- expected, found {task!r}")
    coef = _vector(data, "coef", None)
    dim = coef.shape[0]
    mean = _vector(data, "mean", dim) if "mean" in data else np.zeros(dim)
    scale = _vector(data, "scale", dim) if "scale" in data else np.ones(dim)
    if np.any(scale <= 0):
        raise ValueError("field 'scale' must be > 0")
    intercept = float(data.get("intercept", 0.0))
    info = {k: data[k] for k in ("category", "auroc", "n_train", "description", "model") if k in data}
    if "auroc" not in info and isinstance(data.get("auroc_test"), (int, float)):
        info["auroc"] = float(data["auroc_test"])
    return Probe(task, coef, intercept, mean, scale, data.get("model_id"), info)


def load_probes(results_dir: str | Path | None, *, model_id: str | None = None,
                dim: int | None = None) -> dict[str, Probe]:
    """Probes in ``RESULTS_DIR/probes/*.json`` (see the module docstring for the format).

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
        ``{task: Probe}``, sorted by task.
    """
    if results_dir is None:
        return {}
    folder = Path(results_dir) / "probes"
    if not folder.is_dir():
        log.info("no probes folder in %s: no tasks", results_dir)
        return {}
    probes: dict[str, Probe] = {}
    for f in sorted(folder.glob("*.json")):
        try:
            p = parse_probe(json.loads(f.read_text()), f.stem)
        except (OSError, ValueError, TypeError) as exc:
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


def save_probe(results_dir: str | Path, probe: Probe) -> Path:
    """Write a probe in the format :func:`load_probes` reads (for the benchmark and tests)."""
    folder = Path(results_dir) / "probes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{probe.task}.json"
    data = {"schema": PROBE_SCHEMA, "task": probe.task, "model_id": probe.model_id, "kind": "logistic",
            "coef": probe.coef.tolist(), "intercept": probe.intercept, "mean": probe.mean.tolist(),
            "scale": probe.scale.tolist(), **probe.info}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data) + "\n")
    tmp.replace(path)
    return path
