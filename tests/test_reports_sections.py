"""Report sections and sentence splitting on well-formed, odd and malformed text."""

from __future__ import annotations

import pytest

from reports import SECTION_NAMES, ReportSections, parse_sections, split_sentences

FULL = """ROUTINE EEG REPORT

Patient: CARTER, ROSA   MRN: 10000000   Date of study: 2018-12-28

HISTORY: A 15-year-old girl with staring spells.

MEDICATIONS:
- levetiracetam

TECHNIQUE
Digital EEG with the 10-20 system (19 electrodes).

DESCRIPTION OF THE RECORD:
The background is continuous. PDR: 9.5 Hz. No epileptiform discharges were seen.

IMPRESSION: Normal awake EEG.

Clinical Correlation:
A normal EEG does not exclude epilepsy.

Interpreted by: A. Nakamura, MD   Date: 2018-12-28
"""


def test_full_report_splits_into_all_sections() -> None:
    s = parse_sections(FULL)
    assert s.present == SECTION_NAMES
    assert s.history == "A 15-year-old girl with staring spells."
    assert s.medications == "- levetiracetam"
    assert s.technique.startswith("Digital EEG")
    assert s.description.endswith("No epileptiform discharges were seen.")
    assert s.impression == "Normal awake EEG."
    assert s.correlation == "A normal EEG does not exclude epilepsy."
    assert "ROUTINE EEG REPORT" in s.other and "MRN: 10000000" in s.other and "Interpreted by" in s.other
    assert s.other.index("ROUTINE") < s.other.index("Patient")  # order kept
    assert "Patient" not in s.electrographic_text() and "levetiracetam" not in s.electrographic_text()


@pytest.mark.parametrize("heading,section", [
    ("IMPRESSION:", "impression"), ("impression", "impression"), ("Impression -", "impression"),
    ("**Interpretation:**", "impression"), ("Conclusion", "impression"), ("SUMMARY:", "impression"),
    ("Findings:", "description"), ("EEG description", "description"), ("Description Of The Recording", "description"),
    ("Reason for study", "history"), ("Indication:", "history"), ("INDICATION/HISTORY", "history"),
    ("Indication / History:", "history"), ("Meds:", "medications"), ("Current medications", "medications"),
    ("Introduction", "technique"), ("Technical description:", "technique"), ("Comment:", "correlation"),
    ("CORRELATION", "correlation"), ("Clinical correlation:", "correlation"), ("2. Impression:", "impression"),
])
def test_heading_variants(heading: str, section: str) -> None:
    s = parse_sections(f"{heading}\nSome text here.\n")
    assert s.get(section) == "Some text here.", s
    inline = parse_sections(f"{heading} Some text here.\n") if heading.rstrip("*").endswith((":", "-")) else None
    if inline is not None:
        assert inline.get(section) == "Some text here."


def test_inline_heading_text_and_uppercase_without_colon() -> None:
    s = parse_sections("HISTORY A 40-year-old man.\nIMPRESSION Abnormal EEG due to focal slowing.")
    assert s.history == "A 40-year-old man."
    assert s.impression == "Abnormal EEG due to focal slowing."


def test_running_text_starting_like_a_heading_is_not_a_heading() -> None:
    s = parse_sections("History of epilepsy since childhood.\nFindings are consistent with a generalized epilepsy.")
    assert s.history == "" and s.impression == ""
    assert "History of epilepsy" in s.description and "Findings are consistent" in s.description


def test_collapsed_one_line_report_still_splits() -> None:
    s = parse_sections("The background is continuous. IMPRESSION: Normal EEG. CLINICAL CORRELATION: None needed.")
    assert s.description == "The background is continuous."
    assert s.impression == "Normal EEG."
    assert s.correlation == "None needed."


def test_background_heading_is_resolved_by_content() -> None:
    eeg = parse_sections("Background: The posterior dominant rhythm is 9 Hz and reactive.\nImpression: Normal.")
    assert eeg.description.startswith("The posterior dominant rhythm") and eeg.history == ""
    hx = parse_sections("Background: 45-year-old man with two spells of confusion.\nImpression: Normal.")
    assert hx.history.startswith("45-year-old") and hx.description == ""


def test_free_text_without_headings_goes_to_description() -> None:
    text = "EEG REPORT\nPatient: John Smith\nThe background is continuous. No seizures.\nSigned by Dr. X"
    s = parse_sections(text)
    assert s.description == "The background is continuous. No seizures."
    assert "EEG REPORT" in s.other and "Patient: John Smith" in s.other and "Signed by" in s.other
    assert s.electrographic_text() == s.description


def test_missing_sections_and_repeated_headings() -> None:
    s = parse_sections("Findings: Generalized slowing.\nSleep: Spindles were seen.\nImpression: Abnormal EEG.")
    assert s.history == s.medications == s.technique == s.correlation == ""
    assert s.description == "Generalized slowing.\nSpindles were seen."
    only_technique = parse_sections("Technique: 21 electrodes, 30 minutes.\nHistory: seizures.")
    assert only_technique.electrographic_text() == "21 electrodes, 30 minutes."


@pytest.mark.parametrize("text", ["", "   \n\t  \n", "\x00\x01\x02", "\r\n\r\n"])
def test_empty_and_degenerate_input(text: str) -> None:
    s = parse_sections(text)
    assert isinstance(s, ReportSections)
    assert s.electrographic_text().strip("\x01\x02") == ""


def test_crlf_and_huge_text_are_handled_quickly() -> None:
    block = "DESCRIPTION:\r\nThe background is continuous.\r\nIMPRESSION:\r\nNormal EEG.\r\n"
    s = parse_sections(block)
    assert s.description == "The background is continuous." and s.impression == "Normal EEG."
    big = "The background is continuous and reactive. " * 20000  # ~860 kB of prose, no headings
    assert len(parse_sections(big).description) > 800_000


def test_get_and_types() -> None:
    s = parse_sections(FULL)
    assert s.get("other") == s.other
    with pytest.raises(KeyError, match="unknown section 'findings'"):
        s.get("findings")
    with pytest.raises(TypeError, match="must be a str"):
        parse_sections(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        s.history = "x"  # type: ignore[misc]  # frozen
    assert set(s.as_dict()) == {*SECTION_NAMES, "other"}


def test_split_sentences_keeps_decimals_abbreviations_and_list_items() -> None:
    text = ("The PDR is 9.5 Hz. Seen by Dr. E. Smith, e.g. for spells. Abnormal EEG due to:\n"
            "1. Mild diffuse slowing\n2) No PDR\n(3) LPDs, left hemisphere\n- Excess beta")
    assert split_sentences(text) == [
        "The PDR is 9.5 Hz.", "Seen by Dr. E. Smith, e.g. for spells.", "Abnormal EEG due to:",
        "Mild diffuse slowing", "No PDR", "LPDs, left hemisphere", "Excess beta",
    ]


def test_split_sentences_joins_hard_wrapped_lines() -> None:
    text = ("The background consists of a well-modulated 9 Hz posterior dominant rhythm that\n"
            "attenuates with eye opening. Sleep was not recorded.")
    assert split_sentences(text) == [
        "The background consists of a well-modulated 9 Hz posterior dominant rhythm that attenuates with eye opening.",
        "Sleep was not recorded.",
    ]
    assert split_sentences("") == []
