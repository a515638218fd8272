"""The phenotype probe benchmark: cohorts, tasks, matching, splits, probes, baselines, results.

Imports ``tokenizer``, ``ehr``, ``reports`` and ``clef``, never ``services``
(ARCHITECTURE.md, "Packages and layers"). Stage of the flow: cohort table → task
generator → matched labels + patient splits → frozen probes → results + plots.

Modules
-------
config      pydantic configs (generation, matching, splits, probes)
cohort      :func:`build_cohort`: one row per session (demographics, codes, groups, findings)
tasks       :class:`TaskDefinition`, inclusion rules, candidate tasks, held-out status
matching    propensity-score matching and standardised mean differences
splits      salted patient splits and the leak check (:class:`SplitLeakError`)
suite       :func:`generate_suite`, :func:`load_suite`, shipped suites (``suites/*.yaml``)
embeddings  :class:`EmbeddingSet` from stores and checkpoints
models      :func:`collect_models`: stores, checkpoints and baselines of a run
probes      logistic and MLP probes, JSON probe files for serving
metrics     AUROC, patient-bootstrap intervals, normalised score, headroom, ECE and Brier score
power       patient-level interval of a mean AUROC over tasks; sizes a study (Hanley-McNeil)
run         :func:`run_benchmark`: results, report, plots, probes
card        the report's validity card: calibration and subgroup tables, stage-overlap audit
truth       validation only: truth classes of a synthetic hospital's tasks (planted / negative / other)
baselines   band power, windowed short-window models, braindecode adapter, the oracle (hidden truth)
cli         ``clef tasks generate`` / ``clef benchmark run`` (a ``clef.cli_plugins`` entry point)

Import from the modules (``from benchmark_tasks.suite import generate_suite``): the package
itself imports nothing, so ``import benchmark_tasks`` is cheap.
"""
