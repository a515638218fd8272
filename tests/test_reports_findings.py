"""Finding extraction on hand-written sentences: negation, uncertainty, sides, abbreviations."""

from __future__ import annotations

import pytest

from reports import REPORT_FINDINGS, FindingMention, extract_findings, finding_labels


def found(text: str) -> set[tuple[str, str, str | None]]:
    return {(m.name, m.status, m.side) for m in extract_findings(text)}


def positive(text: str) -> set[str]:
    return {k for k, v in finding_labels(text).items() if v}


@pytest.mark.parametrize("text,expected", [
    ("No epileptiform discharges were seen.",
     {("ied_focal", "absent", None), ("ied_generalized", "absent", None)}),
    ("There were no epileptiform abnormalities.",
     {("ied_focal", "absent", None), ("ied_generalized", "absent", None)}),
    ("No interictal epileptiform discharges (IEDs) were recorded.",
     {("ied_focal", "absent", None), ("ied_generalized", "absent", None)}),
    ("Epileptiform activity was not present.",
     {("ied_focal", "absent", None), ("ied_generalized", "absent", None)}),
    ("There were no clinical or electrographic seizures.", {("seizure", "absent", None)}),
    ("No focal slowing or asymmetry was present.", {("focal_slowing", "absent", None), ("asymmetry", "absent", None)}),
    ("No focal or lateralized abnormalities were seen.",
     {("focal_slowing", "absent", None), ("asymmetry", "absent", None)}),
    ("The EEG is without epileptiform discharges.",
     {("ied_focal", "absent", None), ("ied_generalized", "absent", None)}),
    ("Negative for seizures.", {("seizure", "absent", None)}),
    ("Free of epileptiform discharges.", {("ied_focal", "absent", None), ("ied_generalized", "absent", None)}),
    ("Absence of sleep spindles.", {("sleep", "absent", None)}),
    ("Sleep was not recorded.", {("sleep", "absent", None)}),
    ("Drowsiness was seen, but sleep was not reached.", {("sleep", "absent", None)}),
    ("Only drowsiness was recorded; the patient did not reach stage 2 sleep.", {("sleep", "absent", None)}),
    ("Seizures were not identified.", {("seizure", "absent", None)}),
])
def test_negations(text: str, expected: set) -> None:
    assert found(text) == expected
    assert not positive(text)


@pytest.mark.parametrize("text,name,side", [
    ("Possible left temporal sharp waves.", "ied_focal", "L"),
    ("Probable right frontal spikes are seen.", "ied_focal", "R"),
    ("Questionable sharp transients versus sharp waves at T4.", "ied_focal", "R"),
    ("A subtle electrographic seizure cannot be excluded.", "seizure", None),
    ("Rhythmic activity at F7 may represent a seizure.", "seizure", "L"),
    ("Findings are suspicious for LPDs over the right hemisphere.", "lpd", "R"),
    ("Equivocal left temporal slowing.", "focal_slowing", "L"),
    ("Sharp waves of uncertain significance over T3.", "ied_focal", "L"),
    ("A normal EEG does not rule out seizures.", "seizure", None),
])
def test_uncertainty_is_possible(text: str, name: str, side: str | None) -> None:
    assert (name, "possible", side) in found(text)
    assert name not in positive(text)
    assert name in {k for k, v in finding_labels(text, possible_as_positive=True).items() if v}


def test_scope_ends_at_but_and_at_verbs() -> None:
    text = "There is generalized slowing but no epileptiform discharges."
    assert found(text) == {("generalized_slowing", "present", None), ("ied_focal", "absent", None),
                           ("ied_generalized", "absent", None)}
    text = "No epileptiform discharges were seen and moderate diffuse slowing is present."
    assert ("generalized_slowing", "present", None) in found(text)
    text = "Frequent left temporal spikes, however no seizures were recorded."
    assert found(text) == {("ied_focal", "present", "L"), ("seizure", "absent", None)}
    text = "No abnormalities other than right temporal slowing."
    assert found(text) == {("focal_slowing", "present", "R")}
    assert positive("Mild generalized slowing is present; no epileptiform discharges.") == {"mild_slowing"}


@pytest.mark.parametrize("text,expected", [
    ("Rare left temporal sharp waves are seen, maximal at F7/T3.", {("ied_focal", "present", "L")}),
    ("Spikes at T4 and F8.", {("ied_focal", "present", "R")}),
    ("Interictal epileptiform discharges, right hemisphere", {("ied_focal", "present", "R")}),
    ("Frequent bursts of generalized 3 Hz spike-and-wave discharges.", {("ied_generalized", "present", None)}),
    ("3 Hz spike and wave discharges during hyperventilation.", {("ied_generalized", "present", None)}),
    ("There are generalized spike-wave discharges (GSW) at 2.5-3 Hz.", {("ied_generalized", "present", None)}),
    ("Bilateral independent temporal sharp waves.", {("ied_focal", "present", None)}),
    ("PLEDs over the left hemisphere.", {("lpd", "present", "L")}),
    ("Right hemispheric LPDs at 1 Hz.", {("lpd", "present", "R")}),
    ("There are periodic sharp discharges over the left hemisphere.", {("lpd", "present", "L")}),
    ("GPDs with triphasic morphology.", {("gpd", "present", None)}),
    ("Triphasic waves are seen.", {("gpd", "present", None)}),
    ("Burst suppression (BS) is present.", {("burst_suppression", "present", None)}),
    ("BS pattern with 5 s suppressions.", {("burst_suppression", "present", None)}),
    ("There is a low-voltage, suppressed background.", {("low_voltage", "present", None)}),
    ("Prominent generalized beta activity (excess beta).", {("excess_beta", "present", None)}),
    ("Faster frequencies are attenuated over the right hemisphere (asymmetry).", {("asymmetry", "present", "R")}),
    ("LRDA over the left temporal region.", {("focal_slowing", "present", "L")}),
    ("Frequent GRDA, frontally predominant.", {("generalized_slowing", "present", None)}),
    ("FIRDA is seen.", {("generalized_slowing", "present", None)}),
    ("Polymorphic delta activity over the left temporal region.", {("focal_slowing", "present", "L")}),
    ("Moderate diffuse slowing of the background.", {("generalized_slowing", "present", None)}),
    ("The background is mildly slow for age.", {("mild_slowing", "present", None)}),
    ("Mild diffuse slowing with intermixed theta.", {("mild_slowing", "present", None)}),
    ("Mild generalized delta slowing.", {("generalized_slowing", "present", None)}),
    ("The PDR is slowed to 6.5 Hz.", {("pdr_slowing", "present", None)}),
    ("Posterior dominant rhythm: 7.0 Hz, slow for age.", {("pdr_slowing", "present", None)}),
    ("Slowing of the posterior dominant rhythm", {("pdr_slowing", "present", None)}),
    ("There is no posterior dominant rhythm (absent PDR).",
     {("pdr_slowing", "present", None), ("pdr_slowing", "possible", None)}),
    ("No PDR is seen; this is abnormal for age.", {("pdr_slowing", "present", None)}),
    ("No PDR", {("pdr_slowing", "present", None)}),
    ("No posterior dominant rhythm was seen.", {("pdr_slowing", "possible", None)}),
    ("The PDR is 10 Hz, well formed and reactive.", set()),
    ("Two electrographic seizures with onset over Fp1/Fp2.", {("seizure", "present", None)}),
    ("One seizure was recorded with onset over T3/T5.", {("seizure", "present", "L")}),
    ("Stage 2 sleep was recorded, with symmetric sleep spindles and vertex waves.", {("sleep", "present", None)}),
    ("The study is limited by muscle and movement artifact.", {("artifact_limited", "present", None)}),
    ("Technically limited recording.", {("artifact_limited", "present", None)}),
    ("Intermittent muscle and movement artifact.", set()),
    ("Right hemispheric PLEDs and left temporal LRDA.", {("lpd", "present", "R"), ("focal_slowing", "present", "L")}),
    ("Sharp waves at T3 and slowing over the right hemisphere.",
     {("ied_focal", "present", "L"), ("focal_slowing", "present", "R")}),
    ("Generalized slowing and left temporal spikes.",
     {("generalized_slowing", "present", None), ("ied_focal", "present", "L")}),
    ("Left and right temporal sharp waves.", {("ied_focal", "present", None)}),
    ("Sharp transients at T4.", {("ied_focal", "possible", "R")}),
    ("Non-epileptiform sharp transients in the left temporal region.", set()),
    ("This is a normal EEG.", {("normal", "present", None)}),
    ("Normal awake and asleep EEG.", {("normal", "present", None), ("sleep", "present", None)}),
    ("Abnormal EEG due to:", {("normal", "absent", None)}),
    ("This EEG is abnormal because of focal slowing.",
     {("normal", "absent", None), ("focal_slowing", "present", None)}),
])
def test_lexicon_and_sides(text: str, expected: set) -> None:
    assert found(text) == expected


@pytest.mark.parametrize("text", [
    "Vertex sharp waves and spindles in sleep.",
    "Benign sporadic sleep spikes are seen.",
    "Wicket spikes over the left temporal region, a normal variant.",
    "6 Hz phantom spike-and-wave is a benign variant.",
    "Slow-wave sleep was recorded, with slow roving eye movements in drowsiness.",
    "Non-epileptic events were captured.",
    "Postictal slowing followed the event.",
])
def test_benign_variants_and_non_findings(text: str) -> None:
    names = {m.name for m in extract_findings(text) if m.status == "present"}
    assert not names & {"ied_focal", "ied_generalized", "seizure", "generalized_slowing", "focal_slowing",
                        "mild_slowing"}, names


def test_unlocalised_ieds_take_the_reports_type() -> None:
    gen = ("DESCRIPTION: Generalized spike-and-wave discharges. Epileptiform discharges are frequent.\n"
           "IMPRESSION: Abnormal.")
    assert positive(gen) == {"ied_generalized"}
    alone = "Epileptiform discharges are seen."
    assert positive(alone) == {"ied_focal"}


def test_sections_read_by_default_skip_history_and_correlation() -> None:
    report = ("HISTORY: Breakthrough seizure, rule out seizures.\n"
              "DESCRIPTION: The background is continuous. No epileptiform discharges.\n"
              "IMPRESSION: Normal EEG.\n"
              "CORRELATION: Focal slowing suggests a structural lesion; seizures cannot be excluded.")
    assert positive(report) == {"normal"}
    everything = {m.name for m in extract_findings(report, sections=None)}
    assert {"seizure", "focal_slowing"} <= everything
    assert positive("HISTORY: seizures.\nCORRELATION: Generalized slowing.") == {"generalized_slowing"}
    with pytest.raises(ValueError, match="unknown sections"):
        extract_findings(report, sections=("findings",))


def test_labels_cover_every_finding_and_types() -> None:
    labels = finding_labels("")
    assert list(labels) == list(REPORT_FINDINGS) and not any(labels.values())
    mentions = extract_findings("Left temporal sharp waves.")
    assert all(isinstance(m, FindingMention) for m in mentions)
    assert mentions[0].sentence == "Left temporal sharp waves."
    with pytest.raises(TypeError, match="must be a str"):
        extract_findings(None)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        mentions[0].status = "absent"  # type: ignore[misc]


def test_findings_named_like_the_synthetic_spec() -> None:
    from clef.synthetic.spec import FINDINGS

    assert set(FINDINGS) <= set(REPORT_FINDINGS)
