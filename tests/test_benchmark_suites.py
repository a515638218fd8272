"""Every suite the project ships parses, validates and passes its leak and digest checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark_tasks.config import CATEGORIES
from benchmark_tasks.suite import SUITES_DIR, load_suite, shipped_suites


def test_the_project_ships_a_suite() -> None:
    assert shipped_suites(), f"no suite YAML in {SUITES_DIR}"


@pytest.mark.parametrize("path", shipped_suites(), ids=lambda p: p.stem)
def test_shipped_suite_parses(path: Path) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert {"name", "version", "format_version", "tasks", "files", "config"} <= set(raw)
    suite = load_suite(path)
    assert suite.tasks and len({t.name for t in suite.tasks}) == len(suite.tasks)
    assert {t.category for t in suite.tasks} <= set(CATEGORIES)
    for t in suite.tasks:
        assert t.inclusion and t.stats is not None and t.stats.n_positive > 0
        assert (t.finding is not None) == (t.category == "finding")
    if not all(suite.file(t).is_file() for t in ("labels", "splits", "balance", "cohort")):
        pytest.skip(f"tables of {path.name} not present (Parquet files not checked out)")
    suite.verify()
    assert set(suite.labels["task"].unique()) == {t.name for t in suite.tasks}


def test_a_broken_suite_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nfiles: {labels: a, splits: b, balance: c, cohort: d}\ntasks:\n"
                   "  - {name: t, category: finding, kind: finding, finding: lpd, colour: red}\n")
    with pytest.raises(ValueError, match="colour"):
        load_suite(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="expected a suite mapping"):
        load_suite(bad)


def test_subset_keeps_the_named_tasks_and_only_their_labels() -> None:
    suite = load_suite(shipped_suites()[0])
    names = [t.name for t in suite.tasks[::5]][:3]
    sub = suite.subset(list(reversed(names)))
    assert [t.name for t in sub.tasks] == names  # in the suite's order
    assert sorted(sub.labels["task"].unique().to_list()) == sorted(names)
    assert sub.labels.height == suite.labels.filter(suite.labels["task"].is_in(names)).height
    assert sub.splits.equals(suite.splits)
    with pytest.raises(KeyError, match="no tasks"):
        suite.subset([names[0], "not a task"])
