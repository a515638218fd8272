"""Frozen-embedding probes."""

from __future__ import annotations

import numpy as np


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
