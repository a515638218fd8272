"""Synthetic neurologist EEG reports, with realistic wording and realistic imperfection.

:func:`write_report` describes what the simulated EEG actually contains (an
:class:`~clef.synthetic.spec.EEGSummary`: PDR frequency, vigilance states, events,
drawn findings) in the way clinical EEG reports are written: sections (history,
medications, technique, description, impression, clinical correlation) under varying
headings (upper/lower case, with or without colons), synonyms and abbreviations (PDR,
IEDs, GPDs, LPDs, BS), explicit negations ("No epileptiform discharges were seen"), and
sometimes fake PHI (patient name, MRN, date of study, referring physician) so that PHI
scrubbing can be tested. Fixed wording is data beside the module (``data/report_wording.yaml``,
physicians in ``data/names.yaml``); sentences built from what was drawn stay here.

Reports are imperfect on purpose: each finding present in the EEG is missed with
``ReportConfig.miss_rate`` and, with ``ReportConfig.overcall_rate``, a report asserts one
finding the EEG does not contain. :class:`ReportResult` records what the report asserts,
misses and over-calls, so the benchmark's report-derived labels have a known error.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from clef.synthetic.catalogue import CONDITIONS, DATA_DIR, EPILEPSY_KEYS, read_yaml
from clef.synthetic.population_config import PopulationConfig, ReportConfig
from clef.synthetic.records import Patient, SessionTruth
from clef.synthetic.spec import FINDINGS, EEGSummary, PlantedFinding

__all__ = [
    "LATERALIZED",
    "NEGATION_PHRASES",
    "OVERCALL_POOL",
    "SECTION_HEADINGS",
    "ReportResult",
    "write_report",
]

#: The wording of the reports (``data/report_wording.yaml``): section → key → phrases.
_WORDING: dict[str, dict[str, tuple[str, ...]]] = {
    section: {key: tuple(phrases) for key, phrases in table.items()}
    for section, table in read_yaml(DATA_DIR / "report_wording.yaml").items()
}
#: Canonical section → the headings a report may use for it (case varies further).
SECTION_HEADINGS: dict[str, tuple[str, ...]] = _WORDING["section_headings"]
#: Negation sentences, by what they negate.
NEGATION_PHRASES: dict[str, tuple[str, ...]] = _WORDING["negations"]

#: Findings with a side.
LATERALIZED: frozenset[str] = frozenset({"ied_focal", "focal_slowing", "asymmetry", "lpd"})

#: Findings a reader may over-call (the common false positives of EEG reading).
OVERCALL_POOL: tuple[str, ...] = ("ied_focal", "focal_slowing", "mild_slowing", "excess_beta", "asymmetry",
                                  "generalized_slowing")

_SIDE = {"L": "left", "R": "right"}
_REGIONS = {  # region -> (left electrodes, right electrodes)
    "temporal": ("T3/T5", "T4/T6"),
    "anterior temporal": ("F7/T3", "F8/T4"),
    "frontotemporal": ("F7/T3", "F8/T4"),
    "centrotemporal": ("C3/T3", "C4/T4"),
    "frontal": ("F3/F7", "F4/F8"),
    "parieto-occipital": ("P3/O1", "P4/O2"),
}
_LEFT_CH = {"Fp1", "F7", "F3", "T3", "C3", "T5", "P3", "O1"}
_RIGHT_CH = {"Fp2", "F8", "F4", "T4", "C4", "T6", "P4", "O2"}
_PHYSICIANS = read_yaml(DATA_DIR / "names.yaml")  # family names and initials of referrers and readers


@dataclass(frozen=True)
class ReportResult:
    """A written report and what it says.

    Attributes
    ----------
    text : str
    asserted : tuple of str
        Finding names the report asserts (in :data:`FINDINGS` order).
    missed : tuple of str
        Findings present in the EEG that the report does not mention.
    overcalled : tuple of str
        Findings the report asserts that the EEG does not contain.
    asserted_findings : tuple of PlantedFinding
        The asserted findings with side and severity (over-calls have ``cause="overcall"``).
    normal : bool
        The impression calls the EEG normal (nothing asserted).
    phi : tuple of str
        Fake PHI strings written into the text (names, MRN, dates, physicians).
    sections : tuple of str
        Canonical section names, in order (keys of :data:`SECTION_HEADINGS`).
    """

    text: str
    asserted: tuple[str, ...]
    missed: tuple[str, ...]
    overcalled: tuple[str, ...]
    asserted_findings: tuple[PlantedFinding, ...]
    normal: bool
    phi: tuple[str, ...]
    sections: tuple[str, ...]


class _Writer:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, options: Sequence[str]) -> str:
        return options[int(self.rng.random() * len(options))]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


def _report_config(config: object) -> ReportConfig:
    if config is None:
        return ReportConfig()
    if isinstance(config, ReportConfig):
        return config
    if isinstance(config, PopulationConfig):
        return config.reports
    raise TypeError(f"config must be a PopulationConfig, a ReportConfig or None, found {type(config).__name__}")


def _age_phrase(age: float) -> str:
    if age < 2.0:
        months = max(1, int(age * 12))
        return f"{months}-month-old"
    return f"{int(age)}-year-old"


def _sex_word(w: _Writer, sex: str, age: float) -> str:
    if age < 1.0:
        return "infant " + ("girl" if sex == "female" else "boy")
    if age < 13:
        return "girl" if sex == "female" else "boy"
    if age < 18:
        return w.pick(("adolescent girl", "female")) if sex == "female" else w.pick(("adolescent boy", "male"))
    return w.pick(("woman", "female", "F")) if sex == "female" else w.pick(("man", "male", "M"))


def _fmt_date(w: _Writer, d: dt.date) -> str:
    style = int(w.rng.random() * 3)
    if style == 0:
        return f"{d.month:02d}/{d.day:02d}/{d.year}"
    if style == 1:
        return d.isoformat()
    return f"{d.strftime('%B')} {d.day}, {d.year}"


def _duration_phrase(w: _Writer, seconds: float) -> str:
    minutes = int(round(seconds / 60.0))
    if minutes >= 60 and w.chance(0.5):
        h, m = divmod(minutes, 60)
        return f"{h} hour{'s' if h > 1 else ''}" + (f" {m} minutes" if m else "")
    return w.pick((f"{minutes} minutes", f"{minutes} min", f"approximately {minutes} minutes"))


def _severity_word(sev: float) -> str:
    return "mild" if sev < 0.4 else ("moderate" if sev < 0.7 else "severe")


def _frequency_word(w: _Writer, sev: float) -> str:
    if sev < 0.35:
        return w.pick(("Rare", "Occasional"))
    if sev < 0.7:
        return w.pick(("Occasional", "Intermittent", "Frequent"))
    return w.pick(("Frequent", "Abundant", "Very frequent"))


def _event_electrodes(eeg: EEGSummary, kind: str, side: str | None) -> str | None:
    """The electrodes of the first event of ``kind`` on ``side``, as 'F7/T3'."""
    for e in eeg.events:
        if e.kind != kind or not e.channels:
            continue
        chans = [c for c in e.channels if c not in ("Fz", "Cz", "Pz")]
        if side == "L":
            chans = [c for c in chans if c in _LEFT_CH]
        elif side == "R":
            chans = [c for c in chans if c in _RIGHT_CH]
        if chans:
            return "/".join(chans[:2])
    return None


def _history_indication(w: _Writer, session: SessionTruth, patient: Patient, keys: set[str]) -> str:
    reason = None
    try:
        reason = patient.encounter(session.encounter_id).reason
    except KeyError:
        pass
    epilepsy = bool(keys & set(EPILEPSY_KEYS))
    if session.setting == "icu":
        by_reason = {
            "cardiac_arrest": ("status post cardiac arrest, for prognostication", "comatose after cardiac arrest",
                               "post-arrest, evaluate for seizures and background reactivity"),
            "status_epilepticus": ("status epilepticus, monitoring of treatment", "ongoing seizures, on infusions",
                                   "refractory status epilepticus"),
            "acute_stroke": ("acute stroke with fluctuating exam, rule out seizures",
                             "new stroke with decreased responsiveness"),
            "encephalopathy": ("altered mental status", "encephalopathy, evaluate for nonconvulsive seizures",
                               "fluctuating mental status"),
            "sepsis": ("sepsis with altered mental status", "septic encephalopathy, rule out subclinical seizures"),
            "respiratory_failure": ("intubated and sedated, rule out subclinical seizures",
                                    "unresponsive on the ventilator"),
        }
        return w.pick(by_reason.get(reason or "", ("decreased responsiveness", "rule out nonconvulsive status",
                                                    "unexplained coma")))
    if session.setting == "emu":
        if "pnes" in keys:
            return w.pick(("characterization of spells, epileptic versus non-epileptic",
                           "differentiate epileptic from psychogenic events"))
        if epilepsy:
            return w.pick(("characterization of spells", "presurgical evaluation", "spell capture",
                           "medication-refractory seizures, localization of onset"))
        return w.pick(("characterization of paroxysmal events", "recurrent spells of unclear etiology"))
    if reason == "encephalopathy" or "encephalopathy" in keys:
        return w.pick(("altered mental status", "confusion", "encephalopathy, rule out seizures"))
    if epilepsy:
        return w.pick(("follow-up of epilepsy", "breakthrough seizure", "seizure recurrence on medication",
                       "medication adjustment"))
    if "syncope" in keys:
        return w.pick(("syncope versus seizure", "transient loss of consciousness"))
    if "dementia" in keys:
        return w.pick(("cognitive decline", "memory loss with episodes of confusion"))
    if "stroke" in keys:
        return w.pick(("transient neurologic symptoms", "episodes of speech arrest after stroke"))
    if "migraine" in keys:
        return w.pick(("headache with visual aura", "headaches"))
    if session.age_years < 16:
        return w.pick(("staring spells", "possible seizure", "developmental delay", "febrile seizure"))
    return w.pick(("first-time seizure", "episode of unresponsiveness", "possible seizure", "spells"))


def _present(eeg: EEGSummary) -> dict[str, list[PlantedFinding]]:
    out: dict[str, list[PlantedFinding]] = {}
    for f in eeg.findings:
        if f.severity > 0:
            out.setdefault(f.name, []).append(f)
    return _in_order(out)


def _in_order(findings: dict[str, list[PlantedFinding]]) -> dict[str, list[PlantedFinding]]:
    """``findings`` (name → its findings) in :data:`FINDINGS` order."""
    return dict(sorted(findings.items(), key=lambda kv: FINDINGS.index(kv[0])))


def _side_text(f: PlantedFinding) -> str:
    return _SIDE.get(f.side or "", "")


def _fill(templates: tuple[str, ...], f: PlantedFinding) -> tuple[str, ...]:
    """The phrases of a finding worded from side and severity alone, placeholders filled."""
    side, severity = _side_text(f), _severity_word(f.severity)
    return tuple(t.format(side=side, Side=side.capitalize(), severity=severity, Severity=severity.capitalize())
                 for t in templates)


def _describe(w: _Writer, name: str, fs: list[PlantedFinding], eeg: EEGSummary) -> str:
    """A DESCRIPTION sentence for an asserted finding."""
    f = max(fs, key=lambda x: x.severity)
    side = _side_text(f)
    sev = f.severity
    if name == "ied_focal":
        region = w.pick(tuple(_REGIONS))
        chans = _event_electrodes(eeg, "ied_focal", f.side) or _REGIONS[region][0 if f.side == "L" else 1]
        wave = w.pick(("sharp waves", "spikes", "spike-and-slow-wave complexes", "sharp-and-slow-wave complexes"))
        text = f"{_frequency_word(w, sev)} {side} {region} {wave} are seen, maximal at {chans}"
        text += w.pick((" (IEDs).", ", consistent with interictal epileptiform discharges (IEDs).", "."))
        if len(fs) > 1:
            text += " Independent discharges are also seen over the homologous contralateral region."
        return text
    if name == "ied_generalized":
        hz = w.pick(("3 Hz", "3-4 Hz", "4-5 Hz", "2.5-3 Hz"))
        n = eeg.count("ied_generalized")
        count = f" ({n} bursts)" if n > 1 and w.chance(0.5) else ""
        return w.pick((
            f"{_frequency_word(w, sev)} bursts of generalized {hz} spike-and-wave discharges are seen{count}, "
            f"lasting up to {1 + int(sev * 4)} s.",
            f"Generalized {hz} polyspike-and-wave discharges{count}, frontally predominant.",
            f"There are generalized spike-wave discharges (GSW) at {hz}{count}.",
        ))
    if name == "seizure":
        n = max(1, eeg.count("seizure"))
        word = {1: "One", 2: "Two", 3: "Three"}.get(n, str(n))
        onset = _event_electrodes(eeg, "seizure", None)
        where = f" with onset over {onset}" if onset else ""
        return w.pick((
            f"{word} electrographic seizure{'s' if n > 1 else ''} {'were' if n > 1 else 'was'} recorded{where}, "
            f"evolving in frequency and amplitude.",
            f"{word} seizure{'s' if n > 1 else ''} captured{where}: rhythmic activity evolving in frequency, "
            f"morphology and location, followed by postictal slowing.",
        ))
    if name == "pdr_slowing":
        return ""  # described with the PDR
    if name == "focal_slowing":
        region = w.pick(("temporal", "frontotemporal", "centroparietal", "hemispheric"))
        return w.pick((
            f"{_frequency_word(w, sev)} polymorphic delta slowing is seen over the {side} {region} region.",
            f"There is focal slowing over the {side} {region} region.",
            f"Continuous {side} {region} delta slowing is present." if sev >= 0.6
            else f"Intermittent {side} {region} theta-delta slowing is present.",
        ))
    return w.pick(_fill(_WORDING["descriptions"][name], f))


def _impression_item(w: _Writer, name: str, fs: list[PlantedFinding], eeg: EEGSummary) -> str:
    f = max(fs, key=lambda x: x.severity)
    if name == "seizure":
        n = max(1, eeg.count("seizure"))
        return w.pick((f"Electrographic seizures (n={n})", f"{n} electrographic seizure{'s' if n > 1 else ''}"))
    if name == "pdr_slowing" and eeg.pdr_hz is None:
        return w.pick(("Absent posterior dominant rhythm", "No PDR"))
    if name == "pdr_slowing":
        return w.pick(("Slowing of the posterior dominant rhythm", f"Slow PDR ({eeg.pdr_hz:.1f} Hz)"))
    return w.pick(_fill(_WORDING["impressions"][name], f))


def _correlation(w: _Writer, asserted: dict[str, list[PlantedFinding]], atc: Sequence[str]) -> str:
    if not asserted:
        return w.pick((
            "A normal EEG does not exclude the diagnosis of epilepsy. Clinical correlation is recommended.",
            "Normal study. A normal interictal EEG does not rule out seizures; consider a sleep-deprived or "
            "prolonged recording if clinically indicated.",
            "No EEG correlate. Please correlate clinically.",
        ))
    parts: list[str] = []
    if "ied_focal" in asserted or "lpd" in asserted:
        f = (asserted.get("ied_focal") or asserted["lpd"])[0]
        parts.append(w.pick((
            f"The {_side_text(f)} sided epileptiform discharges indicate focal cortical irritability and an "
            f"increased risk of focal-onset seizures.",
            f"These findings are consistent with a potentially epileptogenic focus in the {_side_text(f)} hemisphere.",
        )))
    if "ied_generalized" in asserted:
        parts.append(w.pick(("The generalized discharges support a generalized epilepsy.",
                             "Findings are consistent with a generalized epilepsy syndrome.")))
    if "seizure" in asserted:
        parts.append("Electrographic seizures were captured; the treating team was notified.")
    if {"generalized_slowing", "mild_slowing"} & set(asserted):
        parts.append(w.pick((
            "Diffuse slowing indicates a nonspecific cerebral dysfunction, as seen in toxic-metabolic "
            "encephalopathy, medication effect or diffuse structural disease.",
            "The slowing is nonspecific and consistent with a diffuse encephalopathy.",
        )))
    if {"focal_slowing", "asymmetry"} & set(asserted):
        f = (asserted.get("focal_slowing") or asserted["asymmetry"])[0]
        parts.append(w.pick((
            f"Focal slowing suggests a structural lesion or focal dysfunction in the {_side_text(f)} hemisphere; "
            f"correlate with neuroimaging.",
            f"The {_side_text(f)} hemispheric abnormality suggests focal cerebral dysfunction.",
        )))
    if {"burst_suppression", "low_voltage"} & set(asserted):
        sedated = any(a in ("N01AX10", "N05CD08") for a in atc)
        parts.append("Burst suppression and suppressed backgrounds indicate severe diffuse cerebral dysfunction"
                     + ("; the contribution of sedation (anesthetic infusion) should be considered." if sedated
                        else ", as seen after hypoxic-ischemic injury."))
    if "gpd" in asserted:
        parts.append("GPDs lie on the ictal-interictal continuum and can be seen in toxic-metabolic "
                     "encephalopathy or anoxic injury.")
    if "pdr_slowing" in asserted:
        parts.append(w.pick(("Slowing of the posterior dominant rhythm is nonspecific and can be seen in "
                             "neurodegenerative disease or encephalopathy.",
                             "The slow PDR suggests mild diffuse cerebral dysfunction.")))
    if "excess_beta" in asserted:
        parts.append(w.pick(("Excess beta activity is most often a medication effect (e.g. benzodiazepines or "
                             "barbiturates).", "Excess beta is likely medication related.")))
    return " ".join(parts)


def write_report(session: SessionTruth, patient: Patient, eeg: EEGSummary, rng: np.random.Generator,
                 config: PopulationConfig | ReportConfig | None = None) -> ReportResult:
    """Write a neurologist's report of one simulated session.

    Parameters
    ----------
    session : SessionTruth
    patient : Patient
        The session's patient (for history, medications and fake PHI).
    eeg : EEGSummary
        What the simulated EEG actually contains (from the EEG simulator, or built by
        hand); its findings are what the report may assert or miss.
    rng : numpy.random.Generator
        Source of the wording and of the misses/over-calls.
    config : PopulationConfig, ReportConfig or None
        Miss, over-call and PHI rates (``PopulationConfig.reports``); defaults if None.

    Returns
    -------
    ReportResult
        The text and what it asserts, misses and over-calls.
    """
    if session.patient_id != patient.patient_id:
        raise ValueError(f"session {session.session_id} belongs to {session.patient_id}, not {patient.patient_id}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, found {type(rng).__name__}")
    rc = _report_config(config)
    w = _Writer(rng)
    day = session.date

    # -- what the report will say --------------------------------------------------------
    present = _present(eeg)
    missed = tuple(n for n in present if w.chance(rc.miss_rate))
    asserted: dict[str, list[PlantedFinding]] = {n: fs for n, fs in present.items() if n not in missed}
    overcalled: tuple[str, ...] = ()
    if w.chance(rc.overcall_rate):
        pool = [n for n in OVERCALL_POOL if n not in present]
        if pool:
            name = w.pick(pool)
            side = ("L" if w.chance(0.5) else "R") if name in LATERALIZED else None
            asserted[name] = [PlantedFinding(name, round(0.2 + 0.3 * rng.random(), 3), side, "overcall")]
            overcalled = (name,)
    asserted = _in_order(asserted)

    # -- style of this report ------------------------------------------------------------
    case = int(rng.random() * 3)  # 0 as listed, 1 upper, 2 title
    colon = w.chance(0.7)
    inline = colon and w.chance(0.5)
    phi: list[str] = []
    sections: list[str] = []
    blocks: list[str] = []

    def heading(section: str) -> str:
        h = w.pick(SECTION_HEADINGS[section])
        h = h.upper() if case == 1 else (h.title().replace("Eeg", "EEG") if case == 2 else h)
        return h + (":" if colon else "")

    def add(section: str, body: str) -> None:
        sections.append(section)
        h = heading(section)
        blocks.append(f"{h} {body}" if inline else f"{h}\n{body}")

    # -- title and PHI header ------------------------------------------------------------
    blocks.append(w.pick(_WORDING["titles"][session.setting]))
    with_phi = w.chance(rc.phi_rate)
    referrer = f"Dr. {w.pick(_PHYSICIANS['physician_initial'])} {w.pick(_PHYSICIANS['physician_family'])}"
    reader = f"{w.pick(_PHYSICIANS['physician_initial'])} {w.pick(_PHYSICIANS['physician_family'])}, MD"
    study_date = _fmt_date(w, day)
    if with_phi:
        name = w.pick((f"{patient.family_name}, {patient.given_name}", patient.name,
                       f"{patient.family_name.upper()}, {patient.given_name.upper()}"))
        dob = _fmt_date(w, patient.birth_date)
        lines = [f"Patient: {name}", f"MRN: {patient.mrn}"]
        if w.chance(0.6):
            lines.append(f"DOB: {dob}")
            phi.append(dob)
        lines.append(f"Date of study: {study_date}")
        lines.append(f"Referring physician: {referrer}")
        phi += [name, patient.mrn, study_date, referrer]
        blocks.append("\n".join(lines) if w.chance(0.5) else "   ".join(lines))

    # -- history -------------------------------------------------------------------------
    conds = [c for c in patient.conditions if c.active_on(day) and c.code in session.condition_codes]
    keys = {c.key for c in conds}
    labels = list(dict.fromkeys(CONDITIONS[c.key].label for c in conds))
    age = session.age_years
    who = f"{_age_phrase(age)} {_sex_word(w, patient.sex, age)}"
    article = "An" if who.startswith(("8", "11-", "18-")) else "A"
    if with_phi and w.chance(0.4):
        who = f"{patient.given_name} {patient.family_name} is {article.lower()} {who}"
        phi.append(f"{patient.given_name} {patient.family_name}")
    else:
        who = f"{article} {who}"
    history = f"{who}"
    if labels:
        history += " with " + w.pick(("a history of ", "", "a past medical history of ")) + _join(labels)
    indication = _history_indication(w, session, patient, keys)
    history += w.pick((f", referred for {indication}.", f". Indication: {indication}.",
                        f". Reason for referral: {indication}."))
    add("history", history)

    # -- medications ---------------------------------------------------------------------
    meds = [m for m in patient.medications if m.active_on(day) and m.atc in session.atc_codes]
    names = list(dict.fromkeys(m.name for m in meds))
    if names:
        cap = w.chance(0.5)
        styled = [n.capitalize() if cap else n for n in names]
        body = ", ".join(styled) + "." if w.chance(0.6) else "\n".join(f"- {n}" for n in styled)
    else:
        body = w.pick(("None.", "None listed.", "No medications reported.", "None known."))
    add("medications", body)

    # -- technique -----------------------------------------------------------------------
    dur = _duration_phrase(w, session.duration_s)
    placement = w.pick(("the International 10-20 system of electrode placement",
                        "standard 10-20 electrode placement", "the 10-20 system"))
    awake = any(s.state == "awake" for s in eeg.states)
    states = ["awake"] if awake else []
    if any(s.state == "drowsy" for s in eeg.states):
        states.append("drowsy")
    if eeg.reached_sleep:
        states.append("asleep")
    state_text = _join(states) if states else "unresponsive"
    if session.setting == "routine":
        tech = (f"Digital EEG recorded for {dur} with {placement} (19 scalp electrodes) and a single EKG "
                f"channel, in the {state_text} state{'s' if len(states) > 1 else ''}.")
        for kind, what in (("hyperventilation", "Hyperventilation"), ("photic", "Photic stimulation")):
            tech += f" {what} was {'' if any(e.kind == kind for e in eeg.events) else 'not '}performed."
    elif session.setting == "emu":
        tech = (f"Continuous video-EEG monitoring in the Epilepsy Monitoring Unit using {placement} with 19 scalp "
                f"electrodes plus EKG. This report covers {dur} of recording.")
    else:
        sedated = any(a in ("N01AX10", "N05CD08", "N05CM18") for a in session.atc_codes)
        tech = (f"Portable continuous EEG at the bedside in the ICU using {placement} (19 electrodes). "
                f"Recording duration: {dur}. The patient was "
                + ("intubated and sedated." if sedated else w.pick(("not sedated.", "off sedation."))))
    add("technique", tech)

    # -- description ---------------------------------------------------------------------
    desc: list[str] = []
    if "burst_suppression" not in asserted and "low_voltage" not in asserted:
        if {"generalized_slowing", "mild_slowing"} & set(asserted):
            desc.append(w.pick(("The background is continuous.", "The background is continuous and reactive.")))
        elif session.setting == "icu":
            desc.append(w.pick(("The background is continuous and reactive.", "The background is continuous.")))
        else:
            desc.append(w.pick(("The background is continuous, well organized and reactive.",
                                "The background is well organized with an appropriate anterior-posterior gradient.",
                                "Background activity is symmetric and well organized for age.")))
    if eeg.pdr_hz is not None and awake:
        pdr = f"{eeg.pdr_hz:.1f} Hz"
        if "pdr_slowing" in asserted:
            desc.append(w.pick((f"The posterior dominant rhythm (PDR) is slow at {pdr}.",
                                f"The PDR is slowed to {pdr}, poorly sustained.",
                                f"Posterior dominant rhythm: {pdr}, slow for age.")))
        else:
            desc.append(w.pick((f"The posterior dominant rhythm (PDR) is {pdr}, symmetric and reactive to eye opening.",
                                f"A {pdr} posterior dominant rhythm is seen, attenuating with eye opening.",
                                f"PDR: {pdr}, well formed and reactive.")))
    else:
        if "pdr_slowing" in asserted:
            desc.append(w.pick(("There is no posterior dominant rhythm (absent PDR).",
                                "No PDR is seen; this is abnormal for age.")))
        else:
            desc.append(w.pick(("No posterior dominant rhythm was seen.", "A PDR was not identified.")))
    for name, fs in asserted.items():
        sentence = _describe(w, name, fs, eeg)
        if sentence:
            desc.append(sentence)
    if eeg.reached_sleep:
        desc.append(w.pick(("Stage 2 sleep was recorded, with symmetric sleep spindles and vertex waves.",
                            "The patient reached N2 sleep; spindles and K-complexes were symmetric.",
                            "Drowsiness and stage II sleep were seen with normal sleep transients (spindles, "
                            "vertex waves).")))
    elif any(s.state == "drowsy" for s in eeg.states) and awake:
        desc.append(w.pick(("Drowsiness was seen, but sleep was not reached.",
                            "Only drowsiness was recorded; the patient did not reach stage 2 sleep.")))
    else:
        desc.append(w.pick(("Sleep was not recorded.", "No sleep was obtained.")))
    if not ({"ied_focal", "ied_generalized", "lpd", "gpd"} & set(asserted)):
        desc.append(w.pick(NEGATION_PHRASES["epileptiform"]))
    if "seizure" not in asserted and (session.setting != "routine" or w.chance(0.5)):
        desc.append(w.pick(NEGATION_PHRASES["seizure"]))
    if not ({"focal_slowing", "asymmetry", "lpd"} & set(asserted)) and w.chance(0.5):
        desc.append(w.pick(NEGATION_PHRASES["focal"]))
    if w.chance(0.3):
        desc.append(w.pick(("Intermittent muscle and movement artifact.", "Occasional electrode artifact at T4.",
                            f"Intermittent {int(session.mains_hz)} Hz artifact.", "EKG artifact is noted.")))
    add("description", " ".join(desc))

    # -- impression ----------------------------------------------------------------------
    state_word = "awake and asleep" if eeg.reached_sleep and awake else ("awake" if awake else "")
    if not asserted:
        impression = w.pick((f"Normal {state_word + ' ' if state_word else ''}EEG.",
                             "NORMAL EEG.",
                             "This is a normal EEG" + (f" in the {state_word} state{'s' if ' and ' in state_word else ''}."
                                                       if state_word else ".")))
    else:
        lead = w.pick(("Abnormal EEG due to:", "ABNORMAL EEG", f"Abnormal {state_word + ' ' if state_word else ''}EEG:",
                       "This EEG is abnormal because of:"))
        fmt = w.pick(("{i}. {t}", "{i}) {t}", "({i}) {t}"))
        items = [fmt.format(i=i, t=_impression_item(w, n, fs, eeg)) for i, (n, fs) in enumerate(asserted.items(), 1)]
        impression = lead + "\n" + "\n".join(items)
    add("impression", impression)

    # -- clinical correlation ------------------------------------------------------------
    add("correlation", _correlation(w, asserted, session.atc_codes))

    footer = f"Interpreted by: {reader}"
    if with_phi:
        footer += f"   Date: {study_date}"
        phi.append(reader)
    blocks.append(footer)

    asserted_findings = tuple(f for fs in asserted.values() for f in fs)
    return ReportResult(
        text="\n\n".join(blocks) + "\n",
        asserted=tuple(asserted),
        missed=missed,
        overcalled=overcalled,
        asserted_findings=asserted_findings,
        normal=not asserted,
        phi=tuple(dict.fromkeys(phi)),
        sections=tuple(sections),
    )


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]
