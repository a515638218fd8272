"""Read FHIR R4 exports into de-identified :class:`~ehr.record.PatientRecord` objects.

:func:`load_fhir` reads a ``Bundle`` JSON file (any bundle type: collection, searchset,
transaction ...), a single-resource JSON file, an NDJSON bulk-data file (one resource a
line, types mixed or one type per file as ``Patient.ndjson``, optionally ``.gz``), or a
directory of such files (searched recursively for ``*.json``, ``*.ndjson``,
``*.jsonl`` and their ``.gz`` forms; dot-files are skipped).

Every resource is validated on its own with the ``fhir.resources.R4B`` model of its type
(hospital exports are R4; the package default is R5), so one invalid resource is
reported as a :class:`FhirProblem` with its id and a short reason and skipped, while the
rest of its bundle is kept. Broken JSON (a whole file, or one NDJSON line, reported with
its line number) is reported the same way. Nothing raises for bad *data*; a missing path
raises :class:`FileNotFoundError`.

What is read
------------
``Patient``
    gender (``male``/``female`` → ``M``/``F``; ``other``/``unknown`` → None), birth date,
    race and ethnicity from the US Core extensions. No name, MRN or address is kept.
``Organization``
    names the site of encounters (first identifier value, else name).
``Encounter``
    period, ``class`` code, care setting from a ``type`` coding whose system ends with
    ``eeg-care-setting``, ``serviceProvider`` site.
``Condition``
    ICD-10-CM coding (system ``http://hl7.org/fhir/sid/icd-10-cm``; ``icd-10`` variants
    and the ICD-10-CM OID accepted), normalised to the dotted form and validated with
    ``simple_icd_10_cm``; onset (``onsetDateTime`` / ``onsetPeriod.start``), abatement
    (``abatementDateTime`` / ``abatementPeriod.start``). ``entered-in-error`` and
    ``refuted`` conditions are dropped.
``MedicationStatement`` / ``MedicationRequest`` / ``MedicationAdministration`` (+ ``Medication``)
    ATC coding (``http://www.whocc.no/atc``), else RxNorm mapped with
    :func:`ehr.atc.atc_for_rxnorm`, else the drug name (coding display or text, also
    with trailing strength/form words removed) mapped with :func:`ehr.atc.atc_for_name`.
    RxNorm is kept when given or derivable (:func:`ehr.atc.rxnorm_for_atc`). Dates:
    statement/administration ``effectivePeriod`` or ``effectiveDateTime``; request
    ``dispenseRequest.validityPeriod``, else ``authoredOn`` as start (open-ended).
    ``medicationReference`` to a ``Medication`` (contained or anywhere in the input) is
    resolved. ``entered-in-error``/``not-taken``/``cancelled`` ones are dropped.
``Procedure``
    an EEG session when it has an identifier whose system ends with ``eeg-session``
    (its value is the session id) or is coded SNOMED CT 54550000 (Electroencephalogram;
    the Procedure id is the session id). Other procedures are ignored.

Decisions
---------
* **Other resource types.** A resource type that FHIR R4 defines but CLEF does not read
  (``Observation``, ``Practitioner``, ``Location``, ``Provenance`` ...) is skipped
  silently and counted in :attr:`FhirLoadResult.ignored`; a ``resourceType`` that is not
  a FHIR R4 resource at all (``"Banana"``) is a problem (``"unsupported resource
  type ..."``).
* **Unknown patients.** Resources referencing a ``Patient`` that never appears still
  give a record (sex, birth date, race unknown) and one problem per such patient, so no
  diagnosis is lost. A resource with no patient reference at all is a problem.
* **Future dates.** A *start-like* date (birth, onset, drug start, encounter / session
  start) after ``now`` (default: today) is a problem and is treated as unknown, which
  for an onset or start means "active since ever" (a recording error, not a cancelled
  fact). End-like dates (abatement, drug end, validity period end) in the future are
  legitimate (a planned stop) and are kept.
* **Partial dates** (``2015``, ``2015-03``) are read as the first day of the period for
  start-like dates and the last day for end-like ones.
* **Values the models do not check**: a ``gender`` outside the FHIR value set is a
  problem and the sex is unknown; the rest of the Patient is kept.
* **Codes**: conditions without a valid ICD-10-CM code are problems (``"no ICD-10-CM
  code ..."``) and skipped; medications with neither an ATC code nor a mappable
  RxNorm code or name are problems and skipped; an RxNorm code the curated ATC table
  cannot map is kept with ``atc=None`` and reported.
* **Duplicates** (same type and id seen twice): the first is kept; a later copy that
  differs is a problem.
* A ``dateTime`` with a time but no time zone (``2015-01-01T10:00:00``) is invalid FHIR,
  yet common in real exports. It is read as the local wall-clock time it states (the
  calendar day, which is all CLEF uses, is kept as written) and reported as a caveat
  with the resource id and field; the resource is kept.

Modules: :mod:`ehr.fhir.load` (:func:`~ehr.fhir.load.load_fhir`: files, bundles, NDJSON,
validation and dispatch by resource type), one module per resource read
(:mod:`~ehr.fhir.patient`, :mod:`~ehr.fhir.encounter` with ``Organization``,
:mod:`~ehr.fhir.condition`, :mod:`~ehr.fhir.medication`, :mod:`~ehr.fhir.procedure`),
:mod:`~ehr.fhir.collector` (what has been read so far, and the problems) and
:mod:`~ehr.fhir.values` (coding systems and FHIR dates).

Every resource is validated with its R4B model; the models and the ICD-10-CM table are
imported once, on first use. NDJSON is streamed line by line.
"""
