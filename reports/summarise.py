"""Summaries of a report's electrographic content: a local LLM, or an extractive fallback.

CLEF embeds an LLM summary of each report so that the text side of the
alignment sees the EEG findings, not history, medications or PHI. Hospitals cannot send
reports to a hosted model, so the LLM is a *local* Hugging Face model directory
(:class:`LLMSummariser`); where none is available, :class:`ExtractiveSummariser` (the
default) keeps the report's own electrographic sentences. Both take the PHI-scrubbed
electrographic text (see :func:`reports.pipeline.process_report`) and both are
deterministic (greedy decoding; stable ranking).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from reports.errors import SummariserError
from reports.findings import extract_findings
from reports.sentences import split_sentences
from reports.text_encoder import TextEncoderConfig, require_model_dir

if TYPE_CHECKING:
    from reports.text_encoder import FrozenTextEncoder

__all__ = [
    "ELECTROGRAPHIC_QUERIES",
    "SUMMARY_PROMPT",
    "ExtractiveSummariser",
    "LLMSummariser",
    "Summariser",
    "SummariserConfig",
    "make_summariser",
]

logger = logging.getLogger(__name__)

#: Instruction given to the LLM; ``{report}`` is replaced by the scrubbed electrographic text.
SUMMARY_PROMPT = (
    "You summarise clinical EEG reports for a research database.\n"
    "Keep only the electrographic content: background (continuity, reactivity, symmetry, voltage), "
    "posterior dominant rhythm, focal or generalized slowing, epileptiform discharges, seizures, "
    "periodic or rhythmic patterns, burst suppression, sleep features, artifacts that limit the study, "
    "and the overall impression (normal or abnormal). Keep negative findings "
    "(for example 'no epileptiform discharges'). Keep sides and locations.\n"
    "Leave out the clinical history, indication, medications, technical details, recommendations, "
    "and any names, dates, places or identifiers.\n"
    "Write 1 to 5 short plain sentences, no lists, no preamble.\n\n"
    "Report:\n{report}\n\nSummary:"
)

#: Query phrases that define "electrographic content" for the extractive ranking.
ELECTROGRAPHIC_QUERIES: tuple[str, ...] = (
    "The background is continuous and reactive with a posterior dominant rhythm of 9 Hz.",
    "There is generalized slowing of the background.",
    "Focal polymorphic delta slowing over the left temporal region.",
    "Interictal epileptiform discharges: sharp waves and spikes.",
    "Generalized spike-and-wave discharges.",
    "An electrographic seizure was recorded.",
    "Lateralized or generalized periodic discharges.",
    "Burst suppression with a low-voltage suppressed background.",
    "Sleep spindles and vertex waves in stage 2 sleep.",
    "Abnormal EEG due to diffuse slowing.",
    "This is a normal EEG.",
    "No epileptiform discharges were seen.",
)

_EEG_VOCAB = re.compile(
    r"\b(?:eeg|background|rhythm|pdr|hz|alpha|beta|theta|delta|slow\w*|spikes?|sharp|epileptiform|discharges?|"
    r"ieds?|seizures?|ictal|periodic|lpds?|gpds?|pleds?|grda|lrda|burst|suppress\w*|voltage|amplitude|"
    r"asymmetr\w*|symmetric|reactiv\w*|continuous|discontinuous|sleep|spindles|k-complex\w*|vertex|drows\w*|"
    r"artifact|artefact|normal|abnormal|focal|generali[sz]ed|diffuse|lateralized|polymorphic|rhythmic|"
    r"triphasic|hyperventilation|photic|posterior|frequency|uv)\b",
    re.IGNORECASE,
)


# Findings that describe a normal record (they rank below abnormal ones).
_BASELINE = frozenset({"normal", "sleep"})


@runtime_checkable
class Summariser(Protocol):
    """Anything that turns report text into a summary of its electrographic content."""

    def summarise(self, text: str) -> str:
        """Summary of one (PHI-scrubbed, electrographic) report text."""
        ...

    def summarise_many(self, texts: Sequence[str]) -> list[str]:
        """Summaries of several texts, in order."""
        ...


class SummariserConfig(BaseModel):
    """Options of the summarisers (:func:`make_summariser`).

    Attributes
    ----------
    backend : {"extractive", "llm"}
        ``extractive`` (default, no model needed) or a local ``llm``.
    model_dir : str or None
        Local Hugging Face model directory (required for ``llm``).
    max_new_tokens : int
        Generation budget of the LLM.
    max_input_tokens : int
        The LLM prompt is truncated (report text first) to fit this many tokens.
    max_sentences : int
        Sentences kept by the extractive summariser.
    device : str
        Torch device for the LLM and the optional text encoder.
    prompt : str or None
        Replaces :data:`SUMMARY_PROMPT`; must contain ``{report}``.
    text_encoder : TextEncoderConfig or None
        Rank extractive sentences by similarity to :data:`ELECTROGRAPHIC_QUERIES` with
        this encoder; None ranks by a keyword score.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["extractive", "llm"] = "extractive"
    model_dir: str | None = None
    max_new_tokens: int = Field(default=160, ge=1, le=4096)
    max_input_tokens: int = Field(default=1536, ge=16)
    max_sentences: int = Field(default=8, ge=1)
    device: str = "cpu"
    prompt: str | None = None
    text_encoder: TextEncoderConfig | None = None

    @model_validator(mode="after")
    def _check_prompt(self) -> SummariserConfig:
        if self.prompt is not None and "{report}" not in self.prompt:
            raise ValueError("prompt must contain the placeholder '{report}', found none")
        if self.backend == "llm" and not self.model_dir:
            raise ValueError("backend 'llm' needs model_dir (a local Hugging Face model directory), found None")
        return self


# ------------------------------------------------------------------------------ extractive


class ExtractiveSummariser:
    """Keep the report's electrographic sentences, best first up to a cap, in text order.

    A sentence is kept when it names a finding (:func:`reports.findings.extract_findings`,
    negatives included: "No epileptiform discharges were seen" is clinically meaningful)
    or uses EEG vocabulary. Candidates are ranked by cosine similarity to
    :data:`ELECTROGRAPHIC_QUERIES` when a text encoder is given, else by a keyword score
    (4 per present or possible abnormal finding, 2 per negated finding, normal study or
    sleep, 0.25 per EEG word up to 4);
    the best ``max_sentences`` are returned in their original order, exact duplicates
    removed. Deterministic.

    Parameters
    ----------
    config : SummariserConfig, optional
    encoder : FrozenTextEncoder, optional
        Encoder for the similarity ranking (overrides ``config.text_encoder``).
    """

    def __init__(self, config: SummariserConfig | None = None, encoder: FrozenTextEncoder | None = None) -> None:
        self.config = config or SummariserConfig()
        if encoder is None and self.config.text_encoder is not None:
            from reports.text_encoder import FrozenTextEncoder

            encoder = FrozenTextEncoder(self.config.text_encoder)
        self.encoder = encoder
        self._queries: np.ndarray | None = None

    def _candidates(self, text: str) -> list[tuple[int, str, float]]:
        out: list[tuple[int, str, float]] = []
        seen: set[str] = set()
        for i, sent in enumerate(split_sentences(text)):
            key = re.sub(r"\W+", " ", sent.lower()).strip()
            if not key or key in seen:
                continue
            seen.add(key)
            mentions = extract_findings(sent, sections=None)
            n_vocab = len(_EEG_VOCAB.findall(sent))
            if mentions or n_vocab:
                score = sum(4.0 if m.status != "absent" and m.name not in _BASELINE else 2.0 for m in mentions)
                score += 0.25 * min(n_vocab, 4)
                out.append((i, sent, score))
        return out

    def _scores(self, sentences: list[str], keyword: list[float]) -> list[float]:
        if self.encoder is None:
            return keyword
        if self._queries is None:
            self._queries = self.encoder.encode(list(ELECTROGRAPHIC_QUERIES))
        emb = self.encoder.encode(sentences)
        return [float(x) for x in (emb @ self._queries.T).max(axis=1)]

    def summarise(self, text: str) -> str:
        """Electrographic sentences of ``text`` (empty string when there are none)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, found {type(text).__name__}")
        cands = self._candidates(text)
        if not cands:
            return ""
        scores = self._scores([c[1] for c in cands], [c[2] for c in cands])
        order = sorted(range(len(cands)), key=lambda k: (-round(scores[k], 6), cands[k][0]))
        keep = sorted(order[: self.config.max_sentences], key=lambda k: cands[k][0])
        return " ".join(_end(cands[k][1]) for k in keep)

    def summarise_many(self, texts: Sequence[str]) -> list[str]:
        """Summaries of several texts, in order."""
        return [self.summarise(t) for t in texts]


def _end(sentence: str) -> str:
    return sentence if sentence.endswith((".", "!", "?")) else sentence + "."


# ------------------------------------------------------------------------------ LLM


class LLMSummariser:
    """Summaries by a local Hugging Face language model (greedy decoding).

    Decoder-only models load with ``AutoModelForCausalLM``, encoder-decoder ones (T5,
    BART ...) with ``AutoModelForSeq2SeqLM``, both with ``local_files_only=True``. The
    prompt (:data:`SUMMARY_PROMPT` or ``config.prompt``) goes through the tokenizer's
    chat template when it has one, as a single user turn.

    Parameters
    ----------
    config : SummariserConfig
        Needs ``model_dir``.

    Raises
    ------
    SummariserError
        If ``model_dir`` is unset, missing, or does not load as a generative model.
    """

    def __init__(self, config: SummariserConfig) -> None:
        self.config = config
        if not config.model_dir:
            raise SummariserError("the llm backend needs SummariserConfig.model_dir (a local Hugging Face model "
                                  "directory); none was given")
        path = Path(config.model_dir)
        require_model_dir(path, "LLM model", SummariserError)
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        try:
            hf_config = AutoConfig.from_pretrained(str(path), local_files_only=True)
            self.is_seq2seq = bool(getattr(hf_config, "is_encoder_decoder", False))
            cls = AutoModelForSeq2SeqLM if self.is_seq2seq else AutoModelForCausalLM
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = cls.from_pretrained(str(path), local_files_only=True)
        except Exception as e:  # transformers raises OSError/ValueError/KeyError depending on what is wrong
            raise SummariserError(f"could not load a generative model from {path}: {type(e).__name__}: {e}") from e
        self.model.to(config.device).eval()
        self.model.requires_grad_(False)
        self._torch = torch
        self.prompt = config.prompt or SUMMARY_PROMPT
        self.uses_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        logger.info("loaded LLM summariser %s (%s, chat template: %s)", path.name,
                    "seq2seq" if self.is_seq2seq else "causal", self.uses_chat_template)

    def build_prompt(self, text: str) -> str:
        """The full prompt for one report text (chat template applied when available)."""
        body = self.prompt.replace("{report}", text.strip())
        if self.uses_chat_template:
            return str(self.tokenizer.apply_chat_template([{"role": "user", "content": body}], tokenize=False,
                                                          add_generation_prompt=True))
        return body

    def _max_input_tokens(self) -> int:
        """``max_input_tokens``, lowered to what the model's positions allow."""
        limit = self.config.max_input_tokens
        cfg = self.model.config
        for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            n = getattr(cfg, attr, None)
            if isinstance(n, int) and n > 0:
                room = n if self.is_seq2seq else n - self.config.max_new_tokens
                limit = min(limit, max(16, room))
                break
        return limit

    def _fit(self, text: str) -> str:
        """Truncate the report text so that the prompt fits ``max_input_tokens``."""
        overhead = len(self.tokenizer(self.build_prompt(""), add_special_tokens=False)["input_ids"])
        budget = max(8, self._max_input_tokens() - overhead)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= budget:
            return text
        logger.warning("report text truncated from %d to %d tokens for the LLM prompt", len(ids), budget)
        return str(self.tokenizer.decode(ids[:budget], skip_special_tokens=True))

    def summarise(self, text: str) -> str:
        """Greedy LLM summary of one text (empty string for an empty text)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, found {type(text).__name__}")
        if not text.strip():
            return ""
        torch = self._torch
        prompt = self.build_prompt(self._fit(text))
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=not self.uses_chat_template)
        enc = {k: v.to(self.config.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        limit = self._max_input_tokens()
        if enc["input_ids"].shape[1] > limit:  # the instructions alone are too long: keep the end
            logger.warning("LLM prompt of %d tokens cut to its last %d", enc["input_ids"].shape[1], limit)
            enc = {k: v[:, -limit:] for k, v in enc.items()}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(**enc, do_sample=False, num_beams=1, max_new_tokens=self.config.max_new_tokens,
                                      pad_token_id=pad)
        new = out[0] if self.is_seq2seq else out[0, enc["input_ids"].shape[1]:]
        return str(self.tokenizer.decode(new, skip_special_tokens=True)).strip()

    def summarise_many(self, texts: Sequence[str]) -> list[str]:
        """Summaries of several texts, in order (one generation each, so results do not
        depend on batch padding)."""
        return [self.summarise(t) for t in texts]


def make_summariser(config: SummariserConfig | None = None, *, encoder: FrozenTextEncoder | None = None) -> Summariser:
    """Build the summariser a config asks for.

    Parameters
    ----------
    config : SummariserConfig, optional
        Default: extractive, keyword ranking.
    encoder : FrozenTextEncoder, optional
        Shared encoder for the extractive ranking (avoids loading a second copy).

    Returns
    -------
    Summariser

    Raises
    ------
    SummariserError
        For the ``llm`` backend without a loadable ``model_dir``.
    """
    config = config or SummariserConfig()
    if config.backend == "llm":
        return LLMSummariser(config)
    return ExtractiveSummariser(config, encoder=encoder)
