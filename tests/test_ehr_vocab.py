"""ehr.vocab: EHR tokens, held-out codes, the vocabulary and its hierarchical roll-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ehr import CodeSet, CodeVocab, age_bucket, ehr_tokens, parse_held_out
from ehr.vocab import PAD, UNK


def _cs(icd=(), atc=(), age=34.0, sex="F", race="White") -> CodeSet:
    return CodeSet(tuple(icd), tuple(atc), age, sex, race)


@pytest.mark.parametrize("age,label", [(0, "0-1"), (1.99, "0-1"), (2, "2-5"), (12.9, "6-12"), (13, "13-17"),
                                       (17.99, "13-17"), (18, "18-29"), (39.5, "30-39"), (89.99, "80-89"),
                                       (90, "90+"), (104, "90+"), (None, "U"), (-1, "U"), (float("nan"), "U")])
def test_age_buckets(age, label) -> None:
    assert age_bucket(age) == label


def test_tokens_layout() -> None:
    toks = ehr_tokens(_cs(["G40909", "I10", "G40.909"], ["n03ax14"], sex=None, race="American Indian/Alaska Native"))
    assert toks == ["age:30-39", "sex:U", "race:american_indian_alaska_native", "icd:G40.909", "icd:I10",
                    "atc:N03AX14"]
    assert ehr_tokens(_cs(age=None, race=None))[:3] == ["age:U", "sex:F", "race:unknown"]


def test_truncation_keeps_the_first_codes() -> None:
    icd = [f"S06.{i}" for i in range(10)]
    toks = ehr_tokens(_cs(icd, ["N03AX14", "N05BA06", "N01AX10"]), max_icd=3, max_atc=2)
    assert toks[3:] == ["icd:S06.0", "icd:S06.1", "icd:S06.2", "atc:N03AX14", "atc:N05BA06"]
    with pytest.raises(ValueError, match="max_icd"):
        ehr_tokens(_cs(), max_icd=-1)
    with pytest.raises(TypeError, match="CodeSet"):
        ehr_tokens({"icd10": []})  # type: ignore[arg-type]


def test_held_out_formats() -> None:
    assert parse_held_out(["icd:G409", "atc:n03a", "N03"]) == ("atc:N03", "atc:N03A", "icd:G40.9", "icd:N03")
    codes = _cs(["G40.909", "G40.109", "N03.9", "I10"], ["N03AX14", "N05BA06"])
    assert ehr_tokens(codes, held_out=["icd:G40.9"])[3:] == ["icd:G40.109", "icd:N03.9", "icd:I10",
                                                              "atc:N03AX14", "atc:N05BA06"]
    assert ehr_tokens(codes, held_out=["G40", "atc:N03A"])[3:] == ["icd:N03.9", "icd:I10", "atc:N05BA06"]
    assert ehr_tokens(codes, held_out=["N03"])[3:] == ["icd:G40.909", "icd:G40.109", "icd:I10", "atc:N05BA06"]
    # held-out codes free their slot before truncation
    assert ehr_tokens(codes, max_icd=1, held_out=["icd:G40"])[3:4] == ["icd:N03.9"]
    for bad in (["sex:F"], [""], ["icd:"]):
        with pytest.raises(ValueError, match="held_out"):
            parse_held_out(bad)
    with pytest.raises(TypeError):
        parse_held_out("G40")


def test_vocab_layout_and_encoding() -> None:
    lists = [ehr_tokens(_cs(["G40.909", "I10"], ["N03AX14"])), ehr_tokens(_cs(["I10"], [], sex="M", race="Other"))]
    vocab = CodeVocab.build(lists)
    assert vocab.tokens[:2] == ("<pad>", "<unk>") and PAD == 0 and UNK == 1
    assert all(t.split(":")[0] in ("age", "sex", "race") for t in vocab.tokens[2:vocab.first_code_id])
    assert vocab.tokens[vocab.first_code_id:] == ("icd:G40.909", "icd:I10", "atc:N03AX14")
    assert "sex:U" in vocab and "age:90+" in vocab and "race:hispanic_latino" in vocab  # fixed demographics
    ids = vocab.encode(lists[0])
    assert vocab.decode(ids) == lists[0] and len(ids) == 6
    assert vocab.encode(lists[0] + lists[0]) == ids  # a set: duplicates removed
    assert vocab.encode(lists[0], max_len=2) == ids[:2]
    assert vocab.encode(["race:martian", "foo:bar", "icd:Z99.89", "atc:Q"]) == [UNK]
    batch, mask = vocab.encode_batch([lists[0], lists[1], []])
    assert batch.dtype == torch.long and mask.dtype == torch.bool and batch.shape == (3, 6)
    assert mask.sum(1).tolist() == [6, 4, 0] and (batch[~mask] == PAD).all()
    with pytest.raises(ValueError, match="max_len"):
        vocab.encode(lists[0], max_len=0)


def test_rare_codes_roll_up_to_ancestors() -> None:
    lists = [["icd:G40.209"], ["icd:G40.219"], ["icd:G40.109"], ["icd:I10"], ["icd:I10"],
             ["atc:N03AX14"], ["atc:N03AX09"], ["atc:N05BA06"], ["atc:N05CD08"], ["atc:C10AA05"]]
    vocab = CodeVocab.build(lists, min_count=2)
    codes = set(vocab.tokens[vocab.first_code_id:])
    assert codes == {"icd:G40.2", "icd:I10", "atc:N03AX", "atc:N05"}
    g402 = vocab.token_id("icd:G40.2")
    assert vocab.encode(["icd:G40.209"]) == [g402]
    assert vocab.encode(["icd:G40.211"]) == [g402]  # never seen: nearest known ancestor
    assert vocab.encode(["icd:G40.109"]) == [UNK]  # alone under G40: no ancestor reaches min_count
    assert vocab.encode(["atc:N05BA06"]) == [vocab.token_id("atc:N05")]
    assert vocab.encode(["atc:C10AA05"]) == [UNK]
    assert vocab.encode(["atc:N03AX18"]) == [vocab.token_id("atc:N03AX")]
    with pytest.raises(ValueError, match="min_count"):
        CodeVocab.build(lists, min_count=0)


def test_held_out_vocab_and_round_trip(tmp_path: Path) -> None:
    lists = [["age:30-39", "sex:F", "icd:G40.909", "icd:I10", "atc:N03AX14"], ["icd:G40.109", "atc:N05BA06"]]
    vocab = CodeVocab.build(lists, held_out=["icd:G40", "atc:N03A"])
    assert vocab.held_out == ("atc:N03A", "icd:G40")
    assert not any(t.startswith(("icd:G40", "atc:N03A")) for t in vocab.tokens)
    assert vocab.decode(vocab.encode(lists[0])) == ["age:30-39", "sex:F", "icd:I10"]  # dropped, not UNK
    path = tmp_path / "vocab.json"
    vocab.save(path)
    payload = json.loads(path.read_text())
    assert payload["format"] == "clef-ehr-vocab" and payload["held_out"] == ["atc:N03A", "icd:G40"]
    again = CodeVocab.load(path)
    assert again == vocab and len(again) == len(vocab) and again.first_code_id == vocab.first_code_id
    assert again.encode(lists[0]) == vocab.encode(lists[0])
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="expected format"):
        CodeVocab.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="start with"):
        CodeVocab(["icd:I10"])


def test_vocab_from_synthetic_population() -> None:
    from clef.synthetic.population import generate_population

    pop = generate_population(60, seed=5)
    patients = {p.patient_id: p for p in pop.patients}
    lists = []
    for s in pop.sessions:
        p = patients[s.patient_id]
        cs = CodeSet(s.condition_codes, s.atc_codes, s.age_years, "F" if p.sex == "female" else "M", p.race)
        lists.append(ehr_tokens(cs))
    vocab = CodeVocab.build(lists)
    ids, mask = vocab.encode_batch(lists)
    assert not (ids == UNK).any()
    assert ids.shape[1] <= 3 + 30 + 50 and mask.sum(1).min() >= 3
