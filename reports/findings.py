"""Negation- and uncertainty-aware extraction of EEG findings from report text.

:func:`extract_findings` reads the electrographic sections of a report (description and
impression; see :data:`FINDING_SECTIONS`) sentence by sentence, finds mentions of the
findings in :data:`REPORT_FINDINGS` with a lexicon of EEG wording and abbreviations
(PDR, IEDs, GSW, LPDs/PLEDs, GPDs, GRDA/LRDA, BS ...), and gives each mention a status
(present / absent / possible) and, for lateralised findings, a side.

Method (NegEx-style, after Chapman et al. 2001)
-----------------------------------------------
* A sentence is cut into clauses at scope terminators ("but", "however", "although",
  "except", "other than", "which", ";" ...).
* Pre-negation triggers ("no", "not", "without", "absence of", "negative for", "free of",
  "no evidence of", "did not reach" ...) negate the findings that follow them in the
  clause up to the next verb ("No PDR *is* seen"), so lists stay negated ("No focal
  slowing or asymmetry was present") and a following affirmative clause does not.
* Post-negation triggers ("were not seen", "was not present", "not identified", "is
  absent" ...) negate the findings before them, back to the previous verb.
* Uncertainty triggers ("possible", "probable", "questionable", "suspicious for",
  "equivocal", "may represent", "cannot be excluded", "of uncertain significance" ...)
  make a mention ``possible``; "cannot be excluded"/"does not rule out" are
  uncertainty, not negation.

Decisions
---------
* **Sections**: the clinical correlation section is *not* read by default: it restates
  findings in interpretive sentences ("Focal slowing suggests a structural lesion" is
  written for asymmetry too; "does not rule out seizures" follows normal studies), and
  history/indication text ("rule out seizures") is not electrographic. Text without
  headings is read whole (it parses as ``description``).
* **Mild slowing**: diffuse slowing graded "mild"/"mildly" *without* delta is
  ``mild_slowing`` (the usual grading: mild = theta range, moderate = theta and delta,
  severe = delta predominant); diffuse slowing that is moderate, severe, unqualified or
  includes delta is ``generalized_slowing``. The grade is read per mention, so a report
  may carry both (the synthetic hospital plants drug-related mild slowing independently
  of encephalopathic slowing; forcing one grade per report doubled the errors there).
* **Rhythmic delta**: GRDA/FIRDA/OIRDA → ``generalized_slowing``; LRDA/TIRDA →
  ``focal_slowing`` (with side). Rhythmic delta is kept with the slowing labels, the
  closest of the 16, rather than with the periodic discharges.
* **PDR**: a slow/slowed PDR is ``pdr_slowing``; an *absent* PDR is ``pdr_slowing`` when
  the report calls it abnormal ("absent PDR", "No PDR is seen; this is abnormal for
  age", or a bare impression item "No PDR"); a plain "No posterior dominant rhythm was
  seen" is ``possible`` (absence is expected in a drowsy, asleep or comatose patient).
  The PDR frequency is not compared with an age norm.
* **IED type**: generalised cues ("generalized", "bisynchronous", GSW, "3 Hz spike and
  wave") → ``ied_generalized``; side, region or electrode → ``ied_focal``; an
  unlocalised affirmed mention ("epileptiform discharges are seen") takes the type of the
  report's localised IED mentions, else ``ied_focal``; an unlocalised negation ("No
  epileptiform discharges") negates both. "Sharp transients" are at most ``possible``
  IEDs; benign variants (wicket spikes, BSSS, 14&6, 6 Hz phantom spike-and-wave), vertex
  waves/POSTS and "non-epileptiform ..." are not IEDs.
* **Periodic**: LPDs/PLEDs/BIPDs → ``lpd``; GPDs/triphasic waves → ``gpd``; "periodic
  discharges" take ``lpd`` with a side or lateralised cue and ``gpd`` with a generalised
  one.
* **Side** and **locality** are read from the nearest context that states one: the
  modifiers before the term in its phrase, the rest of its phrase, its clause, its
  sentence (the last two cut at the neighbouring terms of other findings, so in "Sharp
  waves at T3 and slowing over the right hemisphere" each finding keeps its own side).
  Side words ("left", "right", "L", "R") win over electrode parity (odd = left, even =
  right, z = none); both sides or "bilateral" → None. Only lateralised findings
  (:data:`LATERALIZED_FINDINGS`) carry a side.
* ``sleep`` means sleep was recorded (N2/N3, spindles, K-complexes, vertex waves,
  "asleep"); drowsiness alone is not sleep. ``artifact_limited`` means the reader says
  artefact limited or obscured the study, not that some artefact was present.
* ``normal`` is the impression's "normal EEG" (an "abnormal EEG" is ``normal`` absent).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from reports.sections import SECTION_NAMES, parse_sections
from reports.sentences import split_sentences

__all__ = [
    "FINDING_SECTIONS",
    "LATERALIZED_FINDINGS",
    "REPORT_FINDINGS",
    "FindingMention",
    "extract_findings",
    "finding_labels",
    "labels_from_mentions",
]

#: Findings read from reports (names shared with ``clef.synthetic.spec.FINDINGS`` where they overlap).
REPORT_FINDINGS: tuple[str, ...] = (
    "normal",
    "generalized_slowing",
    "mild_slowing",
    "focal_slowing",
    "pdr_slowing",
    "ied_focal",
    "ied_generalized",
    "seizure",
    "lpd",
    "gpd",
    "burst_suppression",
    "low_voltage",
    "excess_beta",
    "asymmetry",
    "sleep",
    "artifact_limited",
)

#: Findings given a side ("L"/"R") when the text says one.
LATERALIZED_FINDINGS: frozenset[str] = frozenset({"focal_slowing", "ied_focal", "lpd", "asymmetry", "seizure"})

#: Sections read by default (see the module docstring for why correlation is not).
FINDING_SECTIONS: tuple[str, ...] = ("description", "impression")

Status = Literal["present", "absent", "possible"]
Side = Literal["L", "R"]
_STATUS_RANK = {"present": 2, "possible": 1, "absent": 0}


@dataclass(frozen=True)
class FindingMention:
    """One mention of a finding in a report.

    Attributes
    ----------
    name : str
        One of :data:`REPORT_FINDINGS`.
    status : {"present", "absent", "possible"}
    side : {"L", "R"} or None
        For lateralised findings when the text gives one side.
    sentence : str
        The sentence (or impression item) it was read from.
    """

    name: str
    status: Status
    side: Side | None
    sentence: str


# ------------------------------------------------------------------------------ lexicon

_I = re.IGNORECASE
_STATES = (r"(?:awake|asleep|wake|wakefulness|sleep|drowsy|drowsiness|routine|sleep[- ]deprived|video|ambulatory|"
           r"continuous|prolonged|interictal|adult|pediatric|paediatric|digital|long[- ]term|bedside|portable|"
           r"and|in|the|state|states|for|age|recorded)")
_RECORD = r"(?:EEG|electroencephalogram|electroencephalography|study|record|recording|tracing|video[- ]?EEG|cEEG|vEEG)"
_PDR = (r"(?:posterior(?:ly)?[ -]dominant[ -](?:alpha[ -])?rhythm|posterior[ -](?:basic|background)[ -]rhythm|"
        r"\bPDR|\bPBR|occipital[ -](?:alpha[ -])?rhythm|\balpha[ -]rhythm|posterior[ -]rhythm|"
        r"dominant[ -](?:posterior[ -])?(?:alpha[ -])?rhythm)\b")

_TERMS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("normal", re.compile(rf"\bnormal\b(?:[\s,]+{_STATES}){{0,5}}[\s,]+{_RECORD}\b", _I)),
    ("normal", re.compile(rf"\b{_RECORD}\s+(?:is|was)\s+(?:\w+\s+){{0,2}}?(?:normal\b|within normal limits)", _I)),
    ("abnormal", re.compile(rf"\babnormal\b(?:[\s,]+{_STATES}){{0,5}}[\s,]+{_RECORD}\b", _I)),
    ("abnormal", re.compile(rf"\b{_RECORD}\s+(?:is|was)\s+(?:\w+\s+){{0,2}}?abnormal\b", _I)),
    ("pdr", re.compile(_PDR, _I)),
    ("lpd", re.compile(r"\b(?:LPDs?|PLEDs?|BIPLEDs?|BI-?PDs?|BiPDs?|LPEDs?|"
                       r"lateral(?:i[sz]ed)?[ -]periodic[ -](?:epileptiform[ -])?discharges?|"
                       r"periodic[ -]lateral(?:i[sz]ed)?[ -](?:epileptiform[ -])?discharges?|"
                       r"bilateral(?:ly)?[ -]independent[ -]periodic[ -](?:\w+[ -]){0,2}discharges?)\b")),
    ("lpd", re.compile(r"\b(?:lateral(?:i[sz]ed)?[ -]periodic[ -](?:epileptiform[ -])?discharges?|"
                       r"periodic[ -]lateral(?:i[sz]ed)?[ -](?:epileptiform[ -])?discharges?)\b", _I)),
    ("gpd", re.compile(r"\b(?:GPDs?|GPEDs?)\b")),
    ("gpd", re.compile(r"\b(?:generali[sz]ed[ -]periodic[ -](?:epileptiform[ -]|sharp[ -])?"
                       r"(?:discharges?|sharp[ -]waves?|complexes|patterns?)|"
                       r"periodic[ -]generali[sz]ed[ -](?:epileptiform[ -])?discharges?|triphasic[ -]waves?)\b", _I)),
    ("periodic", re.compile(r"\bperiodic[ -](?:sharp[ -]|epileptiform[ -])?(?:discharges?|sharp[ -]waves?|complexes|"
                            r"patterns?|waves?)\b", _I)),
    ("grda", re.compile(r"\b(?:GRDA|FIRDA|OIRDA)\b|\b(?:generali[sz]ed|frontal(?:ly)?(?:[ -]predominant)?|"
                        r"occipital)[ -](?:intermittent[ -])?rhythmic[ -]delta(?:[ -]activity)?\b", _I)),
    ("lrda", re.compile(r"\b(?:LRDA|TIRDA)\b|\blateral(?:i[sz]ed)?[ -]rhythmic[ -]delta(?:[ -]activity)?\b|"
                        r"\btemporal[ -]intermittent[ -]rhythmic[ -]delta(?:[ -]activity)?\b", _I)),
    ("bs", re.compile(r"\bburst[ -]?(?:suppression|suppressed|attenuation)\b|\bsuppression[ -]burst\b", _I)),
    ("bs", re.compile(r"\bBS\b")),
    ("lv", re.compile(r"\b(?:very[ -])?low[ -](?:voltage|amplitude)\b(?![ -](?:fast|beta|spikes?|sharp|rhythmic|theta|"
                      r"alpha|activity at))|\b(?:diffusely[ -])?suppressed[ -]background\b|"
                      r"\bbackground[ -](?:is|was)[ -](?:diffusely[ -])?(?:suppressed|attenuated)\b|"
                      r"\belectrocerebral[ -](?:inactivity|silence|suppression)\b|"
                      r"\b(?:diffuse|generali[sz]ed)[ -](?:background[ -])?suppression\b", _I)),
    ("beta", re.compile(r"\b(?:excess(?:ive)?|increased|prominent|abundant|marked|pronounced|enhanced)\b"
                        r"[\w\s(),-]{0,25}?\bbeta\b|\bbeta\b[\w\s()-]{0,20}?\b(?:excess|increased|prominent|"
                        r"excessive)\b|\bexcess(?:ive)?[ -]fast[ -]activity\b", _I)),
    ("asym", re.compile(r"\basymmetr(?:y|ic|ies|ically)\b|"
                        r"\b(?:attenuat(?:ed|ion)|suppress(?:ed|ion)|lower[ -](?:voltage|amplitude)|"
                        r"reduced[ -](?:voltage|amplitude)|depressed)\b(?:\s+\w+){0,3}?\s+over[ -]the[ -]"
                        r"(?:left|right)(?:[ -]hemisphere)?\b|"
                        r"\b(?:left|right)[ -]hemispheric[ -](?:attenuation|suppression)\b", _I)),
    # benign variants, normal sleep transients and non-epileptic events: mask the IED/seizure words inside them
    ("exclusion", re.compile(
        r"\b(?:vertex[ -](?:sharp[ -])?waves?|wicket[ -]spikes?|small[ -]sharp[ -]spikes?|"
        r"benign[ -](?:\w+[ -]){0,2}(?:sharp[ -]transients|spikes|sharp waves)|positive[ -]spikes?|14[ -]and[ -]6|"
        r"6[ -]Hz[ -](?:phantom[ -])?spike[ -](?:and[ -])?(?:slow[ -])?waves?|phantom[ -]spike(?:[ -]and)?[ -]waves?|"
        r"non-?epileptiform(?:[ -]\w+){0,2}|\bPOSTS\b|"
        r"(?:non-?epileptic|psychogenic|pseudo-?|functional|febrile)[ -](?:seizures?|events?|spells?))", _I)),
    ("ied_uncertain", re.compile(r"\bsharp(?:ly[ -]contoured)?[ -]transients?\b", _I)),
    ("ied", re.compile(r"\b(?:poly)?spikes?[ -](?:and[ -])?(?:slow[ -])?waves?(?:[ -](?:complex(?:es)?|discharges?|"
                       r"bursts?|activity))?\b|"
                       r"\bsharp[ -](?:and[ -])?slow[ -]waves?(?:[ -]complex(?:es)?)?\b|"
                       r"\bsharp[ -]waves?\b|\b(?:poly)?spikes?\b|"
                       r"\b(?:interictal[ -])?epileptiform(?:[ -](?:discharges?|activity|abnormalit(?:y|ies)|features?|"
                       r"transients?|potentials?|patterns?|changes?|spikes?))?\b|"
                       r"\bIEDs?\b|\bGP?SWs?\b|\bphotoparoxysmal[ -]response\b|\bhypsarrhythmia\b|"
                       r"\bparoxysmal[ -]fast[ -]activity\b", _I)),
    ("seizure", re.compile(r"\b(?:(?:electrographic|electroclinical|clinical|subclinical|focal|generali[sz]ed|"
                           r"nonconvulsive|non-convulsive|convulsive|tonic|clonic|absence|typical|atypical)"
                           r"(?:\s+(?:or|and)\s+|\s+))*seizures?\b|\bstatus[ -]epilepticus\b|\bN?CSE\b|"
                           r"\bictal[ -](?:patterns?|discharges?|rhythms?|events?|activity|onsets?|evolution)\b|"
                           r"\belectrographic[ -](?:events?|discharges?)\b", _I)),
    ("slowing", re.compile(r"\bpolymorphic[ -](?:delta|theta)(?:[ -](?:and|or|/)[ -](?:delta|theta))?\b|"
                           r"\b(?:excess(?:ive)?|increased)[ -](?:\w+[ -])?(?:theta|delta)\b|"
                           r"\b(?:slowing|slowed|slow)\b(?![ -](?:waves?|alpha|variant|eye|roving|rolling|spikes?|"
                           r"sharp|spike-|frequencies))", _I)),
    ("sleep", re.compile(r"\b(?:sleep|asleep)\b(?![ -]?(?:deprived|deprivation|deprive))|\bN[23]\b|"
                         r"\bstage[ -](?:II|III|2|3|N2|N3)\b|\b(?:sleep[ -])?spindles\b|\bK[ -]complex(?:es)?\b", _I)),
    ("sleep_vertex", re.compile(r"\bvertex[ -](?:sharp[ -])?waves?\b|\bPOSTS\b", _I)),
    ("artifact_limited", re.compile(
        r"\b(?:limited|obscured|compromised|degraded|contaminated|precluded|hampered|confounded)\s+"
        r"(?:\w+\s+){0,4}?by\s+(?:[\w-]+[\s,]+){0,4}?(?:artifacts?|artefacts?|movement|muscle|motion)\b|"
        r"\b(?:artifacts?|artefacts?)\b(?:\s+[\w-]+){0,5}?\s+(?:limit\w*|obscur\w*|preclud\w*|compromis\w*)\b|"
        r"\btechnically[ -](?:limited|difficult|suboptimal|inadequate)\b|"
        r"\b(?:limited|suboptimal|uninterpretable|non-?diagnostic)[ -](?:study|recording|record|EEG)\b|"
        r"\b(?:interpretation|assessment|evaluation|study|recording|record|EEG)\s+(?:is|was)\s+(?:\w+\s+)?limited\b|"
        r"\bdifficult[ -]to[ -]interpret\b", _I)),
    ("focal_abn", re.compile(r"\b(?:focal|lateral(?:i[sz]ed)?|locali[sz]ed)(?:\s+or\s+(?:focal|lateral(?:i[sz]ed)?|"
                             r"locali[sz]ed))?\s+(?:abnormalit(?:y|ies)|features?|findings?)\b", _I)),
)
_RECORD_GROUPS = frozenset({"normal", "abnormal"})
# Which groups name a finding directly.
_DIRECT = {"lpd": "lpd", "gpd": "gpd", "grda": "generalized_slowing", "lrda": "focal_slowing",
           "bs": "burst_suppression", "lv": "low_voltage", "beta": "excess_beta", "asym": "asymmetry",
           "seizure": "seizure", "sleep": "sleep", "sleep_vertex": "sleep", "artifact_limited": "artifact_limited",
           "normal": "normal"}

# -- context cues
_FOCAL_CUE = re.compile(
    r"\b(?:focal|multifocal|regional|lateral(?:i[sz]ed)?|unilateral|left|right|hemispher\w*|region|quadrant|"
    r"(?:fronto|centro|parieto|temporo)?-?(?:temporal|frontal|parietal|occipital|central)|frontotemporal|"
    r"centrotemporal|centroparietal|parieto-?occipital|fronto-?central|rolandic|midline|bitemporal)\b"
    r"|\b(?:Fp|FP|AF|F|FC|FT|C|CP|T|TP|P|PO|O)\d{1,2}\b", _I)
_GEN_CUE = re.compile(r"\b(?:generali[sz]ed|diffuse(?:ly)?|global(?:ly)?|bilateral(?:ly)?[ -](?:synchronous|symmetric)|"
                      r"bisynchronous|bihemispheric|background|GP?SWs?)\b", _I)
_HZ_SPIKE = re.compile(r"\b\d(?:\.\d)?(?:\s*[-–]\s*\d(?:\.\d)?)?\s*Hz[ -](?:generali[sz]ed[ -])?(?:poly)?spike", _I)
_SPIKE_WORD = re.compile(r"spike", _I)
_POSTICTAL = re.compile(r"\bpost-?ictal\b", _I)
_MILD = re.compile(r"\bmild(?:ly)?\b", _I)
_HIGH_GRADE = re.compile(r"\b(?:moderate(?:ly)?|severe(?:ly)?|marked(?:ly)?|profound(?:ly)?|significant|"
                         r"prominent|delta)\b", _I)
_SLOW_WORD = re.compile(r"\b(?:slow|slowed|slowing|slower)\b(?![ -](?:waves?|alpha|variant))", _I)
_PDR_ABSENT_ADJ = re.compile(rf"\b(?:absent|lack\s+of\s+(?:a|an|the)?\s*|loss\s+of\s+(?:the\s+)?)\s*(?:{_PDR})", _I)
_ABNORMAL_WORD = re.compile(r"\babnormal\b", _I)
_OBS_VERB = re.compile(r"\b(?:is|are|was|were|seen|identified|noted|recorded|present|observed|obtained|appreciated)\b",
                       _I)

_CONJ = re.compile(r"\b(?:and|or|with|plus|as well as|along with)\b", _I)
_SIDE_WORD = re.compile(r"\b(left|right)\b", _I)
_SIDE_LETTER = re.compile(r"(?<![\w/])(L|R)(?![\w/>])")
_ELECTRODE = re.compile(r"\b(?:Fp|FP|AF|F|FC|FT|C|CP|T|TP|P|PO|O)(\d{1,2})\b")
_BILATERAL = re.compile(r"\b(?:bilateral(?:ly)?|bihemispheric|both hemispheres|bitemporal)\b", _I)

# -- NegEx triggers
_TERMINATOR = re.compile(
    r"\b(?:but|however|although|though|except|excepting|apart from|aside from|other than|besides|whereas|while|"
    r"yet|nevertheless|nonetheless|which|whose|who)\b|;", _I)
_PRE_NEG = re.compile(
    r"\b(?:no evidence of|no definite|no clear|no definitive|no|not|without|absence of|absent|negative for|free of|"
    r"nor|none|neither|never|lack of|lacks|lacking|fails? to (?:show|demonstrate|reveal)|failed to (?:show|demonstrate|"
    r"reveal|reach)|did not (?:reach|show|demonstrate|reveal|capture|record|have|achieve)|rather than|resolution of|"
    r"resolved)\b", _I)
_POST_NEG = re.compile(
    r"\b(?:(?:is|are|was|were|has been|have been)\s+(?:not|never)\s+(?:\w+ly\s+)?(?:seen|identified|present|observed|"
    r"noted|recorded|captured|reached|obtained|evident|apparent|demonstrated|appreciated|detected|found|elicited|"
    r"achieved|attained)|(?:is|are|was|were)\s+absent|not\s+(?:seen|identified|present|observed|noted|recorded|"
    r"captured|reached|obtained|demonstrated|appreciated|detected|achieved)|did not occur|(?:has|have)\s+resolved|"
    r"(?:is|are|was|were)\s+(?:ruled out|excluded))\b", _I)
_PSEUDO_NEG = re.compile(
    r"\b(?:no (?:significant )?(?:change|interval change|increase|decrease)|not only|not necessarily|"
    r"gram[ -]negative)\b", _I)
_PRE_UNC = re.compile(
    r"\b(?:possible|possibly|probable|probably|questionable|questionably|question of|may represent|may be|"
    r"might be|might represent|could represent|could be|suspicious for|suspicion (?:of|for)|suspect(?:ed)?|"
    r"equivocal|borderline|suggestive of|concerning for|cannot exclude|can't exclude|can not exclude|"
    r"(?:does|do|did|can|could) not (?:exclude|rule out)|uncertain|unclear|likely|potential|potentially|"
    r"rule out|r/o|versus|vs\.?)\b", _I)
_POST_UNC = re.compile(
    r"\b(?:of (?:uncertain|unclear|questionable|equivocal|doubtful|undetermined|indeterminate) (?:significance|"
    r"clinical significance)|cannot be (?:excluded|ruled out)|can't be (?:excluded|ruled out)|can not be "
    r"(?:excluded|ruled out)|(?:is|are|was|were) not (?:excluded|ruled out)|not (?:be )?(?:excluded|ruled out)|"
    r"(?:is|are|was|were) (?:possible|suspected|questionable|equivocal|uncertain|likely))\b", _I)
_STOP = re.compile(
    r"\b(?:is|are|was|were|be|been|being|has|have|had|shows?|showed|shown|demonstrat\w*|reveal\w*|seen|noted|"
    r"present|identified|observed|recorded|captured|appreciated|obtained|reached|evident|consist\w*|there|"
    r"this|these|that)\b", _I)


@dataclass(frozen=True)
class _Hit:
    group: str
    start: int
    end: int


def _terms(sentence: str) -> list[_Hit]:
    hits = [_Hit(g, m.start(), m.end()) for g, pat in _TERMS for m in pat.finditer(sentence)]
    # Longest first; a span inside a kept one is dropped (so "periodic sharp waves" is
    # not also "sharp waves", and a benign variant masks its "spikes"). The whole-record
    # phrases ("normal awake and asleep EEG") do not mask what they contain.
    kept = [h for h in hits if h.group in _RECORD_GROUPS]
    hits = sorted((h for h in hits if h.group not in _RECORD_GROUPS), key=lambda h: (-(h.end - h.start), h.start))
    for h in hits:
        if any(h.start < k.end and k.start < h.end for k in kept if k.group not in _RECORD_GROUPS):
            continue
        kept.append(h)
    return sorted((h for h in kept if h.group != "exclusion"), key=lambda h: h.start)


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


def _overlaps(a: tuple[int, int], spans: Iterable[tuple[int, int]]) -> bool:
    return any(a[0] < e and s < a[1] for s, e in spans)


class _Sentence:
    """Trigger positions of one sentence, and the status/side logic over them."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.bounds = [0] + [m.start() for m in _TERMINATOR.finditer(text)] + [len(text)]
        pseudo = _spans(_PSEUDO_NEG, text)
        self.pre_unc = _spans(_PRE_UNC, text)
        self.post_unc = _spans(_POST_UNC, text)
        unc = self.pre_unc + self.post_unc
        self.pre_neg = [s for s in _spans(_PRE_NEG, text) if not _overlaps(s, pseudo + unc)]
        self.post_neg = [s for s in _spans(_POST_NEG, text) if not _overlaps(s, pseudo + unc)]
        self.stops = _spans(_STOP, text)
        self.hits = _terms(text)

    def clause(self, pos: int) -> tuple[int, int]:
        lo = max(b for b in self.bounds if b <= pos)
        hi = min(b for b in self.bounds if b > pos) if pos < len(self.text) else len(self.text)
        return lo, hi

    def chunk(self, start: int, end: int) -> tuple[int, int]:
        lo, hi = self.clause(start)
        left = max([lo] + [m.end() for m in re.finditer(r"[,:(]", self.text[:start]) if m.end() > lo])
        right = min([hi] + [m.start() + end for m in re.finditer(r"[,:)]", self.text[end:]) if m.start() + end < hi])
        return left, right

    def _forward(self, triggers: list[tuple[int, int]], start: int) -> bool:
        lo, _ = self.clause(start)
        # the scope of a trigger ends at the first verb after it
        return any(lo <= ts and te <= start and not any(te <= ss and se <= start for ss, se in self.stops)
                   for ts, te in triggers)

    def _backward(self, triggers: list[tuple[int, int]], end: int) -> bool:
        _, hi = self.clause(max(end - 1, 0))
        # the scope of a trigger reaches back to the previous verb
        return any(end <= ts and te <= hi and not any(end <= ss and se <= ts for ss, se in self.stops)
                   for ts, te in triggers)

    def status(self, start: int, end: int) -> Status:
        if self._forward(self.pre_unc, start) or self._backward(self.post_unc, end):
            return "possible"
        if self._forward(self.pre_neg, start) or self._backward(self.post_neg, end):
            return "absent"
        return "present"

    def neighbourhood(self, h: _Hit, lo: int, hi: int) -> tuple[int, int]:
        """``[lo, hi)`` narrowed to lie between the nearest terms of *other* findings, so
        one finding's modifiers ("diffuse", "left") are not read for its neighbour."""
        for o in self.hits:
            if o.group == h.group:
                continue
            if o.end <= h.start:
                lo = max(lo, o.end)
            elif o.start >= h.end:
                hi = min(hi, o.start)
        return lo, hi

    def windows(self, h: _Hit) -> list[str]:
        """Context of a term, nearest first: its modifiers before it in its phrase, the
        rest of its phrase after it, its clause, then its sentence (the last two between
        the neighbouring terms of other findings)."""
        k0, k1 = self.chunk(h.start, h.end)
        c0, c1 = self.neighbourhood(h, k0, k1)
        if c0 > k0:  # another finding earlier in the phrase: its modifiers end at the conjunction
            conj = [m.end() for m in _CONJ.finditer(self.text, c0, h.start)]
            c0 = conj[-1] if conj else c0
        l0, l1 = self.neighbourhood(h, *self.clause(h.start))
        s0, s1 = self.neighbourhood(h, 0, len(self.text))
        t = self.text
        return [t[c0:h.end], t[h.start:c1], t[l0:l1], t[s0:s1]]

    def side(self, h: _Hit) -> Side | None:
        for w in self.windows(h):
            side = _side_of(w)
            if side != "?":
                return side
        return None


def _side_of(segment: str) -> Side | None | Literal["?"]:
    """"L"/"R", None when both sides are named, "?" when the segment names no side."""
    words = {m.group(1).lower() for m in _SIDE_WORD.finditer(segment)}
    words |= {"left" if m.group(1) == "L" else "right" for m in _SIDE_LETTER.finditer(segment)}
    if len(words) == 1:
        return "L" if words == {"left"} else "R"
    if len(words) == 2 or _BILATERAL.search(segment):
        return None
    parity = {int(m.group(1)) % 2 for m in _ELECTRODE.finditer(segment)}
    if len(parity) == 1:
        return "L" if parity == {1} else "R"
    if len(parity) == 2:
        return None
    return "?"


def _locality(windows: Sequence[str], is_spike: bool) -> str | None:
    """"generalized" or "focal" from the nearest window that says either, else None."""
    for text in windows:
        if _GEN_CUE.search(text) or (is_spike and _HZ_SPIKE.search(text)):
            return "generalized"
        if _FOCAL_CUE.search(text):
            return "focal"
    return None


def _classify(s: _Sentence, h: _Hit) -> list[tuple[str, Status, Side | None]]:
    """Findings named by one term hit, with status and side (may be empty)."""
    text = s.text
    term = text[h.start:h.end]
    status = s.status(h.start, h.end)
    near = s.windows(h)[:3]  # phrase before, phrase after, clause (not the whole sentence)

    g = h.group
    if g == "abnormal":
        return [("normal", "absent" if status == "present" else status, None)]
    if g == "normal":
        return [("normal", status, None)]
    if g in ("lpd", "lrda", "asym", "seizure"):
        return [(_DIRECT[g], status, s.side(h))]
    if g in _DIRECT:
        return [(_DIRECT[g], status, None)]
    if g == "periodic":
        loc = _locality(near, False)
        if loc == "generalized" and not _SIDE_WORD.search(near[0] + near[1]):
            return [("gpd", status, None)]
        if loc == "focal":
            return [("lpd", status, s.side(h))]
        return []
    if g == "focal_abn":
        if status == "absent":
            return [("focal_slowing", "absent", None), ("asymmetry", "absent", None)]
        return []
    if g in ("ied", "ied_uncertain"):
        if g == "ied_uncertain" and status == "present":
            status = "possible"  # "sharp transients": of uncertain significance unless qualified
        spike = bool(_SPIKE_WORD.search(term))
        loc = _locality(near, spike)
        if loc == "generalized":
            return [("ied_generalized", status, None)]
        if loc == "focal":
            return [("ied_focal", status, s.side(h))]
        return [("ied", status, None)]  # resolved at report level
    if g == "pdr":
        return _classify_pdr(s, h, status)
    if g == "slowing":
        if _POSTICTAL.search(near[0] + near[1]):
            return []
        loc = _locality(near[:2], False)
        if loc is None and re.search(_PDR, text[slice(*s.clause(h.start))], _I):
            return []  # the PDR's own slowing (handled with the PDR)
        loc = loc or _locality(near[2:], False)
        if loc == "focal":
            return [("focal_slowing", status, s.side(h))]
        if _MILD.search(near[2]) and not _HIGH_GRADE.search(near[2]):
            return [("mild_slowing", status, None)]
        return [("generalized_slowing", status, None)]
    return []  # pragma: no cover - every group is handled above


def _classify_pdr(s: _Sentence, h: _Hit, status: Status) -> list[tuple[str, Status, Side | None]]:
    text = s.text
    l0, l1 = s.clause(h.start)
    # slowed PDR: a slow word in the clause, within 60 characters of the PDR term
    for m in _SLOW_WORD.finditer(text, l0, l1):
        if abs(m.start() - h.start) <= 60 or abs(h.end - m.end()) <= 60:
            return [("pdr_slowing", s.status(m.start(), m.end()), None)]
    if _PDR_ABSENT_ADJ.search(text[max(l0, h.start - 30):h.end]):
        return [("pdr_slowing", "present", None)]
    if status == "absent":  # "No PDR ...", "A PDR was not identified"
        bare = len(text.split()) <= 6 and not _OBS_VERB.search(text)
        if _ABNORMAL_WORD.search(text) or bare:
            return [("pdr_slowing", "present", None)]
        return [("pdr_slowing", "possible", None)]
    return []


def _sentences_for(text: str, sections: Sequence[str] | None) -> list[str]:
    if sections is None:
        return split_sentences(text)
    bad = [s for s in sections if s not in SECTION_NAMES]
    if bad:
        raise ValueError(f"unknown sections {bad}; expected names from {SECTION_NAMES}")
    parsed = parse_sections(text)
    parts = [parsed.get(n) for n in sections if parsed.get(n)]
    if not parts:
        parts = [parsed.electrographic_text()]
    return [s for p in parts for s in split_sentences(p)]


def extract_findings(text: str, *, sections: Sequence[str] | None = FINDING_SECTIONS) -> list[FindingMention]:
    """Find the EEG findings a report mentions, with negation, uncertainty and side.

    Parameters
    ----------
    text : str
        A whole report, a section, or a sentence.
    sections : sequence of str or None
        Canonical sections to read (default :data:`FINDING_SECTIONS`: description and
        impression); when the text has none of them, its electrographic text is read
        (text without headings counts as description). None reads the text as given.

    Returns
    -------
    list of FindingMention
        In text order; one mention per finding, status and side within a sentence.

    Raises
    ------
    TypeError
        If ``text`` is not a str.
    ValueError
        If ``sections`` names an unknown section.

    Examples
    --------
    >>> [(m.name, m.status) for m in extract_findings("There is generalized slowing but no epileptiform discharges.")]
    [('generalized_slowing', 'present'), ('ied_focal', 'absent'), ('ied_generalized', 'absent')]
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, found {type(text).__name__}")
    raw: list[tuple[str, Status, Side | None, str]] = []
    for sentence in _sentences_for(text, sections):
        s = _Sentence(sentence)
        for h in s.hits:
            for name, status, side in _classify(s, h):
                raw.append((name, status, side if name in LATERALIZED_FINDINGS else None, sentence))
    return _resolve_report(raw)


def _resolve_report(raw: list[tuple[str, Status, Side | None, str]]) -> list[FindingMention]:
    """Report-level rules: unlocalised IEDs take the report's IED type; de-duplication."""
    affirmed = {n for n, st, _, _ in raw if st == "present"}
    ied_default = "ied_generalized" if ("ied_generalized" in affirmed and "ied_focal" not in affirmed) else "ied_focal"
    keys = dict.fromkeys((n, status, side, sentence) for name, status, side, sentence in raw
                         for n in ((["ied_focal", "ied_generalized"] if status == "absent" else [ied_default])
                                   if name == "ied" else [name]))
    return [FindingMention(*k) for k in keys]


def labels_from_mentions(mentions: Iterable[FindingMention], *, possible_as_positive: bool = False) -> dict[str, int]:
    """Binary labels over :data:`REPORT_FINDINGS` from extracted mentions.

    Parameters
    ----------
    mentions : iterable of FindingMention
    possible_as_positive : bool
        Count ``possible`` mentions as positive (default: only ``present``).

    Returns
    -------
    dict of str to int
        1 where any mention of the finding is positive, else 0; every finding is a key.
    """
    ok = {"present", "possible"} if possible_as_positive else {"present"}
    labels = dict.fromkeys(REPORT_FINDINGS, 0)
    for m in mentions:
        if m.status in ok and m.name in labels:
            labels[m.name] = 1
    return labels


def finding_labels(text: str, *, possible_as_positive: bool = False,
                   sections: Sequence[str] | None = FINDING_SECTIONS) -> dict[str, int]:
    """Binary labels over :data:`REPORT_FINDINGS` for one report.

    Parameters
    ----------
    text : str
        Report text.
    possible_as_positive : bool
        Count ``possible`` mentions as positive (default False: 1 only for ``present``).
    sections : sequence of str or None
        As in :func:`extract_findings`.

    Returns
    -------
    dict of str to int
        1 for a finding the report asserts, else 0 (absent, possible or not mentioned).
    """
    return labels_from_mentions(extract_findings(text, sections=sections), possible_as_positive=possible_as_positive)
