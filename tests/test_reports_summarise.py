"""Summarisers: the extractive default, and the LLM code path on tiny random local models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from reports import (
    SUMMARY_PROMPT,
    ExtractiveSummariser,
    LLMSummariser,
    Summariser,
    SummariserConfig,
    SummariserError,
    make_summariser,
    split_sentences,
)

ELECTRO = """The background is continuous and reactive. The posterior dominant rhythm (PDR) is 9.5 Hz.
Frequent left temporal sharp waves are seen, maximal at F7/T3. No electrographic seizures were recorded.
The patient tolerated the study well. Stage 2 sleep was recorded, with symmetric sleep spindles.
Thank you for this referral.

Abnormal EEG due to:
1. Left temporal sharp waves (IEDs)

The left sided epileptiform discharges indicate focal cortical irritability."""

CHAT_TEMPLATE = ("{% for m in messages %}<|user|> {{ m['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %} <|assistant|>{% endif %}")


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([SUMMARY_PROMPT, ELECTRO], trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]",
                                                                                                  "[EOS]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 1-layer GPT-2 (with and without a chat template) and a 1-layer T5, random weights."""
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        T5Config,
        T5ForConditionalGeneration,
    )

    root = tmp_path_factory.mktemp("tiny_llm")
    fast = _tiny_tokenizer()
    torch.manual_seed(0)
    gpt = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(fast), n_positions=256,
                     bos_token_id=fast.eos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    model = GPT2LMHeadModel(gpt)
    fast.save_pretrained(root / "gpt")
    model.save_pretrained(root / "gpt")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(root / "gpt_chat")
    model.save_pretrained(root / "gpt_chat")
    t5 = T5Config(vocab_size=len(fast), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2,
                  pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id,
                  decoder_start_token_id=fast.pad_token_id)
    fast.chat_template = None
    fast.save_pretrained(root / "t5")
    T5ForConditionalGeneration(t5).save_pretrained(root / "t5")
    return {"gpt": root / "gpt", "gpt_chat": root / "gpt_chat", "t5": root / "t5"}


# ------------------------------------------------------------------------------ extractive


def test_extractive_keeps_electrographic_sentences_in_order() -> None:
    s = ExtractiveSummariser(SummariserConfig(max_sentences=20))
    out = s.summarise(ELECTRO)
    assert "tolerated" not in out and "Thank you" not in out
    assert "No electrographic seizures were recorded." in out  # negatives are kept
    for a, b in [("background", "sharp waves"), ("sharp waves", "Stage 2"), ("Stage 2", "irritability")]:
        assert out.index(a) < out.index(b)
    assert out.count("Left temporal sharp waves (IEDs)") == 1


def test_extractive_caps_sentences_deterministically() -> None:
    s = make_summariser(SummariserConfig(max_sentences=3))
    assert isinstance(s, ExtractiveSummariser) and isinstance(s, Summariser)
    out = s.summarise(ELECTRO)
    assert len(split_sentences(out)) == 3
    assert "Frequent left temporal sharp waves" in out  # sentences asserting findings rank first
    assert s.summarise(ELECTRO) == out
    assert s.summarise_many([ELECTRO, "", "Thank you."]) == [out, "", ""]
    with pytest.raises(TypeError):
        s.summarise(None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ config


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        SummariserConfig(backend="gpt")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="needs model_dir"):
        SummariserConfig(backend="llm")
    with pytest.raises(ValidationError, match=r"\{report\}"):
        SummariserConfig(prompt="Summarise this.")
    with pytest.raises(ValidationError):
        SummariserConfig(unknown=1)  # type: ignore[call-arg]
    assert "{report}" in SUMMARY_PROMPT and "medications" in SUMMARY_PROMPT


def test_llm_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SummariserError, match="does not exist"):
        make_summariser(SummariserConfig(backend="llm", model_dir=str(tmp_path / "nope")))
    with pytest.raises(SummariserError, match="no config.json"):
        make_summariser(SummariserConfig(backend="llm", model_dir=str(tmp_path)))
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(SummariserError, match="could not load"):
        make_summariser(SummariserConfig(backend="llm", model_dir=str(tmp_path)))


# ------------------------------------------------------------------------------ LLM (code path)


def test_llm_causal_path(tiny_models) -> None:
    s = make_summariser(SummariserConfig(backend="llm", model_dir=str(tiny_models["gpt"]), max_new_tokens=6))
    assert isinstance(s, LLMSummariser) and isinstance(s, Summariser)
    assert not s.is_seq2seq and not s.uses_chat_template
    assert s.build_prompt("PDR 9 Hz.").endswith("Report:\nPDR 9 Hz.\n\nSummary:")
    out = s.summarise(ELECTRO)
    assert isinstance(out, str) and out
    assert "Report:" not in out  # only the new tokens are decoded
    assert s.summarise(ELECTRO) == out  # greedy: deterministic
    assert s.summarise_many(["", ELECTRO]) == ["", out]


def test_llm_chat_template_and_long_input(tiny_models, caplog: pytest.LogCaptureFixture) -> None:
    cfg = SummariserConfig(backend="llm", model_dir=str(tiny_models["gpt_chat"]), max_new_tokens=4,
                           prompt="Keep the EEG findings only.\n{report}")
    s = make_summariser(cfg)
    assert s.uses_chat_template
    assert s.build_prompt("X").startswith("<|user|> Keep the EEG findings only.")
    assert s.build_prompt("X").endswith("<|assistant|>")
    with caplog.at_level("WARNING"):
        out = s.summarise(ELECTRO * 20)  # longer than the 256 positions: truncated, no crash
    assert isinstance(out, str)
    assert "truncated" in caplog.text


def test_llm_seq2seq_path(tiny_models) -> None:
    s = make_summariser(SummariserConfig(backend="llm", model_dir=str(tiny_models["t5"]), max_new_tokens=5))
    assert s.is_seq2seq
    out = s.summarise("Generalized slowing is present.")
    assert isinstance(out, str) and out == s.summarise("Generalized slowing is present.")
