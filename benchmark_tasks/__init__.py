"""The phenotype probe benchmark: cohorts, tasks, matching, splits, probes, baselines, results.

May import ``ehr``, ``reports`` and ``clef`` (embedding API only) (DESIGN.md §3).
"""
