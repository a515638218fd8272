"""Configuration of the benchmark: task generation, matching, splits, probes.

All are pydantic models with ``extra="forbid"``: a misspelt option is an error, never a
silent default. The values of a generated suite are written into its YAML, so a suite
says how it was made.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from clef.patients import PatientSplit

__all__ = [
    "CATEGORIES",
    "COVARIATES",
    "GeneratorConfig",
    "MLPConfig",
    "MatchingConfig",
    "ProbeConfig",
    "SuiteConfig",
]

#: Task categories, in report order.
CATEGORIES: tuple[str, ...] = ("phenotype", "medication", "finding")

#: Covariates the propensity score is fitted on (CLEF: age, sex, site, care setting).
COVARIATES: tuple[str, ...] = ("age", "sex", "site", "setting")

Category = Literal["phenotype", "medication", "finding"]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MatchingConfig(_Config):
    """Propensity-score matching of controls to positives.

    Attributes
    ----------
    ratio : int
        Controls per positive (greedy nearest neighbour without replacement, in rounds:
        every positive gets its first control before any gets a second).
    caliper : float or None
        Largest allowed distance in logit(propensity), in standard deviations of the
        logit over positives and candidate controls (Austin 2011 recommends 0.2).
        None: no caliper.
    covariates : tuple of str
        Subset of ``age``, ``sex``, ``site``, ``setting``.
    control_exclusion : {"ever", "session"}
        For code tasks, which patients may not be controls: ``ever`` (default) any
        patient whose record carries one of the task's codes at any time; ``session``
        only sessions at which such a code is active.
    """

    ratio: int = Field(2, ge=1, le=20)
    caliper: float | None = Field(0.2, gt=0)
    covariates: tuple[str, ...] = COVARIATES
    control_exclusion: Literal["ever", "session"] = "ever"

    @field_validator("covariates")
    @classmethod
    def _covariates(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in v if c not in COVARIATES]
        if bad or not v:
            raise ValueError(f"covariates must be a non-empty subset of {COVARIATES}, found {list(v)}")
        return tuple(dict.fromkeys(v))


class GeneratorConfig(_Config):
    """Which tasks to generate.

    Attributes
    ----------
    categories : tuple of str
        Task categories (``phenotype``, ``medication``, ``finding``).
    min_positives : int
        Fewest matched positive sessions a task must keep.
    min_positive_patients : int
        Fewest distinct patients among them.
    min_test_positives : int
        Fewest positives in the test split (and in train), so AUROC is defined.
    icd_categories : bool
        Besides the curated phenotype groups, one task per ICD-10-CM 3-character
        category (``G40``) with enough positives.
    atc_level : int or None
        Besides the curated medication groups, one task per ATC class of this level
        (3 = pharmacological subgroup ``N03A``, 4 = chemical subgroup ``N03AG``,
        None = none).
    findings : tuple of str or None
        Report findings to make tasks of (default: all of ``reports.REPORT_FINDINGS``).
    dedupe : bool
        Drop a task whose positive sessions equal an earlier task's (a curated group
        is kept over the code class it coincides with).
    """

    categories: tuple[Category, ...] = CATEGORIES
    min_positives: int = Field(20, ge=2)
    min_positive_patients: int = Field(5, ge=1)
    min_test_positives: int = Field(2, ge=1)
    icd_categories: bool = True
    atc_level: int | None = Field(4, ge=1, le=5)
    findings: tuple[str, ...] | None = None
    dedupe: bool = True


class SuiteConfig(_Config):
    """Everything that shapes a generated suite."""

    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    splits: PatientSplit = Field(default_factory=PatientSplit)  # the platform's one patient split


class MLPConfig(_Config):
    """The CLEF protocol's small probe: ``Linear(d, hidden) → GELU → Dropout → Linear(hidden, 1)``.

    Attributes
    ----------
    hidden : int
    dropout : float
    lr : float
        Adam learning rate (CLEF: 1e-4).
    weight_decay : float
    epochs : int
        Passes over the training sessions (CLEF: 5).
    min_steps : int
        Fewest optimiser steps: CLEF's 5 epochs over thousands of sessions per task are
        hundreds of steps; a small archive's task gets at least ``min_steps`` so that the
        probe converges (``epochs`` rules when it gives more).
    batch_size : int
    """

    hidden: int = Field(128, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(5, ge=1)
    min_steps: int = Field(400, ge=0)
    batch_size: int = Field(64, ge=1)


class ProbeConfig(_Config):
    """How frozen embeddings are probed.

    Attributes
    ----------
    probes : tuple of str
        ``logistic`` and/or ``mlp``.
    primary : str
        The probe the summary plots and comparisons use (CLEF: ``mlp``).
    logistic_c : float
        Inverse L2 strength of the logistic probe on standardised features.
    seeds : int
        Seeds of the MLP probe (the logistic probe is deterministic: fitted once).
    n_bootstrap : int
        Bootstrap resamples (of test *patients*) for the 95% AUROC interval.
    mlp : MLPConfig
    """

    probes: tuple[Literal["logistic", "mlp"], ...] = ("logistic", "mlp")
    primary: Literal["logistic", "mlp"] = "mlp"
    logistic_c: float = Field(0.1, gt=0)
    seeds: int = Field(3, ge=1)
    n_bootstrap: int = Field(1000, ge=0)
    mlp: MLPConfig = Field(default_factory=MLPConfig)

    @model_validator(mode="after")
    def _primary(self) -> ProbeConfig:
        if not self.probes:
            raise ValueError("probes must name at least one of 'logistic', 'mlp'")
        if self.primary not in self.probes:
            raise ValueError(f"primary probe {self.primary!r} is not among the probes run {list(self.probes)}")
        return self
