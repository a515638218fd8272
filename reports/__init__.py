"""Reports room of CLEF: neurologists' EEG reports to scrubbed text, findings, summaries and text embeddings.

Stage of the flow (ARCHITECTURE.md, "Data flow"): ``reports text → sections → summary (LLM or
extractive) → text embedding``; the finding labels feed the benchmark's EEG-finding
tasks. This package imports nothing from the other CLEF packages.

Modules
-------
sections
    :func:`parse_sections`: canonical sections (history, medications, technique,
    description, impression, correlation, other) from varied real-world headings.
phi
    :func:`scrub_phi`: rule-based PHI removal (names, dates, IDs, phones, places) with
    typed placeholders; optional spaCy NER.
findings
    :func:`extract_findings` / :func:`finding_labels`: NegEx-style, uncertainty-aware
    finding extraction with sides, over :data:`REPORT_FINDINGS`.
summarise
    :class:`Summariser` protocol; :class:`ExtractiveSummariser` (default) and
    :class:`LLMSummariser` (local Hugging Face model); :func:`make_summariser`.
text_encoder
    :class:`FrozenTextEncoder` (local HF encoder, default all-MiniLM-L6-v2) and the
    trainable :class:`ReportEncoder` head.
pipeline
    :func:`read_report`, :func:`process_report`, :func:`process_reports`.
errors
    :class:`ReportError` (with ``kind``), :class:`SummariserError`, :class:`TextEncoderError`.
"""

from reports.errors import ReportError, SummariserError, TextEncoderError
from reports.findings import (
    FINDING_SECTIONS,
    LATERALIZED_FINDINGS,
    REPORT_FINDINGS,
    FindingMention,
    extract_findings,
    finding_labels,
    labels_from_mentions,
)
from reports.phi import PLACEHOLDERS, PhiConfig, ScrubResult, scrub_phi
from reports.pipeline import (
    DEFAULT_MAX_BYTES,
    ProcessedReport,
    process_report,
    process_reports,
    read_report,
)
from reports.sections import (
    HEADING_SYNONYMS,
    SECTION_NAMES,
    ReportSections,
    parse_sections,
)
from reports.sentences import split_sentences
from reports.summarise import (
    ELECTROGRAPHIC_QUERIES,
    SUMMARY_PROMPT,
    ExtractiveSummariser,
    LLMSummariser,
    Summariser,
    SummariserConfig,
    make_summariser,
)
from reports.text_encoder import (
    FrozenTextEncoder,
    ReportEncoder,
    ReportEncoderConfig,
    TextEncoderConfig,
    default_text_model_path,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ELECTROGRAPHIC_QUERIES",
    "FINDING_SECTIONS",
    "HEADING_SYNONYMS",
    "LATERALIZED_FINDINGS",
    "PLACEHOLDERS",
    "REPORT_FINDINGS",
    "SECTION_NAMES",
    "SUMMARY_PROMPT",
    "ExtractiveSummariser",
    "FindingMention",
    "FrozenTextEncoder",
    "LLMSummariser",
    "PhiConfig",
    "ProcessedReport",
    "ReportEncoder",
    "ReportEncoderConfig",
    "ReportError",
    "ReportSections",
    "ScrubResult",
    "Summariser",
    "SummariserConfig",
    "SummariserError",
    "TextEncoderConfig",
    "TextEncoderError",
    "default_text_model_path",
    "extract_findings",
    "finding_labels",
    "labels_from_mentions",
    "make_summariser",
    "parse_sections",
    "process_report",
    "process_reports",
    "read_report",
    "scrub_phi",
    "split_sentences",
]
