"""``read_recording``: EDF/EDF+/BDF/BDF+ file → canonical :class:`Recording`.

The file is read once, front to back: its header, then its data records (the EEG
signals and the annotation channels in the same pass), its SHA-256 computed from those
same bytes. Everything decided from the header alone (which channels, units, rates, the
bipolar conversion) is planned before any sample is read, so a file that cannot be used
is refused without reading its data.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokenizer.channels import ChannelMap, ChannelMapping, map_channels
from tokenizer.contract import SignalContract
from tokenizer.deid import deidentify
from tokenizer.edf_data import (
    Annotation,
    contiguous_segments,
    read_annotations,
    read_digital,
    to_physical,
)
from tokenizer.edf_header import EDFHeader, SignalHeader, open_edf, read_header
from tokenizer.errors import (
    ContractMismatchError,
    CorruptHeaderError,
    DenseCapError,
    NoEEGChannelsError,
    NoSignalsError,
    TooFewChannelsError,
    UnitError,
)
from tokenizer.hashing import HashingReader
from tokenizer.montage import BipolarMontage, plan_bipolar
from tokenizer.preprocess import (
    FilterPlan,
    plan_filter,
    resample_channel,
    resample_ratio,
    zero_phase_filter,
)
from tokenizer.recording import ChannelReport, Recording
from tokenizer.units import unit_scale

log = logging.getLogger(__name__)

#: Fraction of samples at a digital extreme above which a channel counts as railed.
RAILED_FRACTION = 0.5
#: Largest physical value (µV) an EEG channel's header range may reach (1 kV; keeps float32 finite).
MAX_ABS_UV = 1e9
#: Most gap time (s) an EDF+D/BDF+D file may hold between its segments (gaps are zero-filled in memory).
MAX_GAP_S = 24 * 3600.0
#: Channels filtered together (bounded memory; blocks are much faster than single channels).
FILTER_BLOCK = 5


def plan_channels(header: EDFHeader, contract: SignalContract, *,
                  channel_map: ChannelMap | None = None) -> ChannelMapping:
    """Map a file's channels onto the contract montage, or raise a clear error.

    ``channel_map`` holds a site's own aliases (:class:`tokenizer.channels.ChannelMap`).

    Raises
    ------
    NoSignalsError
        The file has only annotation channels.
    DenseCapError
        A dense cap named by position (BioSemi ABC, EGI) that the channel map does not
        map to enough 10-20 sites.
    BipolarMontageError
        A bipolar montage (``FP1-F7`` ...) that cannot be converted to potentials
        (see :func:`tokenizer.montage.plan_bipolar`).
    NoEEGChannelsError
        No channel maps to the montage.
    TooFewChannelsError
        Fewer electrodes than ``contract.min_channels``.
    """
    return _plan_montage(header, contract, channel_map)[0]


def _plan_montage(header: EDFHeader, contract: SignalContract,
                  channel_map: ChannelMap | None) -> tuple[ChannelMapping, BipolarMontage | None]:
    """:func:`plan_channels`, and the bipolar conversion when the file is read from its
    derivations (None when it is read as referential)."""
    p = header.path
    if not header.data_signals:
        n_ann = len(header.annotation_signals)
        raise NoSignalsError(
            p, f"expected EEG signals, found only {n_ann} annotation channel(s) and no signals "
            "(an annotation-only file such as a hypnogram or scoring file)"
        )
    labels = [s.label for s in header.signals]
    annotation = [s.is_annotation for s in header.signals]
    mapping = map_channels(labels, contract.channels, annotation, channel_map=channel_map)
    n = len(mapping.mapped)
    if mapping.dense_cap is not None and n < contract.min_channels:
        how = ("give a channel map (--channel-map) naming its electrodes nearest the 10-20 sites" if n == 0 else
               f"the channel map maps {n} of them ({', '.join(mapping.mapped)}), fewer than the "
               f"{contract.min_channels} required")
        raise DenseCapError(
            p, f"expected 10-20 electrode names, found a {mapping.dense_cap}: its names are cap positions (its C3, "
            f"F8 or A1 are not the 10-20 sites or ear references of those names), so it is not mapped by name; {how}"
        )
    # Converted from its derivations (average reference) when too few referential channels;
    # refused with the reason when the derivations cannot be converted.
    montage = plan_bipolar(p, labels, annotation, mapping, contract)
    if montage is not None:
        return mapping, montage
    if n == 0:
        found = ", ".join(f"'{s.label}'" for s in header.data_signals[:8])
        raise NoEEGChannelsError(
            p, f"expected channels of the 10-20 montage ({', '.join(contract.channels[:4])} ...), "
            f"found none among {len(header.data_signals)} signals ({found})"
        )
    if n < contract.min_channels:
        extra = f"; {len(mapping.bipolar)} bipolar derivations were ignored" if mapping.bipolar else ""
        raise TooFewChannelsError(
            p, f"expected at least {contract.min_channels} of the {contract.n_channels} canonical electrodes, "
            f"found {n} ({', '.join(mapping.mapped)}){extra}"
        )
    return mapping, None


def _check_rates(header: EDFHeader, sigs: dict[str, SignalHeader], rates: dict[str, float],
                 contract: SignalContract) -> None:
    """Refuse EEG rates the contract cannot use, before any memory is sized from them.

    Raises
    ------
    ContractMismatchError
        A rate below twice the top of the contract spectrogram (usually a wrong record
        duration or samples-per-record field), or one that cannot be resampled to the
        contract rate.
    """
    lowest = 2 * contract.spectrogram.fmax
    for c, rate in rates.items():
        s = sigs[c]
        found = f"{rate:g} Hz ({s.samples_per_record} samples per {header.record_duration:g}-s record)"
        if rate < lowest:
            raise ContractMismatchError(
                header.path, f"EEG channel '{s.label}' is sampled at {found}; expected at least {lowest:g} Hz, "
                f"twice the {contract.spectrogram.fmax:g} Hz top of the contract spectrogram"
            )
        try:
            resample_ratio(rate, contract.sfreq)
        except ValueError as exc:
            raise ContractMismatchError(
                header.path, f"EEG channel '{s.label}' is sampled at {found}, which cannot be resampled to the "
                f"contract's {contract.sfreq:g} Hz ({exc})"
            ) from None


def check_signals(header: EDFHeader, sigs: dict[str, SignalHeader],
                  contract: SignalContract) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Check the units and rates of the EEG signals a file is read from, from its header.

    Parameters
    ----------
    header : EDFHeader
    sigs : dict
        ``{canonical name: signal}`` to be read.
    contract : SignalContract

    Returns
    -------
    scales : dict
        ``{name: factor to µV}``.
    rates : dict
        ``{name: sampling rate in Hz}``.
    warnings : list of str

    Raises
    ------
    UnitError
        A unit that is not a voltage.
    CorruptHeaderError
        A physical range beyond :data:`MAX_ABS_UV`.
    ContractMismatchError
        A rate the contract cannot use.
    """
    p = header.path
    warnings: list[str] = []
    scales: dict[str, float] = {}
    for c, s in sigs.items():
        scale = unit_scale(s.unit)
        if scale is None:
            raise UnitError(
                p, f"EEG channel '{s.label}' has unit '{s.unit}'; expected a voltage (nV, uV/µV, mV or V)"
            )
        if s.unit.strip() == "":
            warnings.append(f"channel '{s.label}' has a blank unit; taken as uV")
        if max(abs(s.physical_min), abs(s.physical_max)) * scale > MAX_ABS_UV:
            raise CorruptHeaderError(
                p, f"physical range of EEG channel '{s.label}' is [{s.physical_min:g}, {s.physical_max:g}] "
                f"{s.unit or 'uV'}; expected one within ±{MAX_ABS_UV:g} µV (a corrupt calibration field)"
            )
        scales[c] = scale
    rates = {c: header.sfreq_of(s) for c, s in sigs.items()}
    _check_rates(header, sigs, rates, contract)
    return scales, rates, warnings


def default_threads() -> int:
    """Threads :func:`read_recording` preprocesses with by default: ``min(2, CPUs)``.

    Two threads take most of what a laptop's cores give; a batch worker that runs one
    thread per process passes ``threads=1``.
    """
    return min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class _ReadPlan:
    """What the header decides before any sample is read.

    Attributes
    ----------
    mapping : ChannelMapping
        Source labels onto the contract montage.
    montage : BipolarMontage or None
        The conversion of a file read from its bipolar derivations.
    sigs : dict
        ``{name: signal}`` read: canonical electrodes, or derivations of a bipolar file.
    scales, rates : dict
        ``{name: factor to µV}`` and ``{name: sampling rate in Hz}``.
    sfreq_in : float
        The most common EEG rate.
    warnings : list of str
    """

    mapping: ChannelMapping
    montage: BipolarMontage | None
    sigs: dict[str, SignalHeader]
    scales: dict[str, float]
    rates: dict[str, float]
    sfreq_in: float
    warnings: list[str]


def _plan_reading(header: EDFHeader, contract: SignalContract, channel_map: ChannelMap | None) -> _ReadPlan:
    """Channels, units and rates to read, from the header alone (refusals raise here)."""
    mapping, montage = _plan_montage(header, contract, channel_map)
    warnings = [*header.warnings, *mapping.warnings]
    suffix = Path(header.path).suffix.lower()
    kind = header.format[:3]
    if suffix in (".edf", ".bdf") and suffix[1:].upper() != kind:
        warnings.append(f"file extension is '{suffix}' but the content is {kind}; read as {kind}")
    # A bipolar file is read derivation by derivation and converted to potentials after filtering.
    sources = montage.sources if montage is not None else mapping.mapped
    sigs = {c: header.signals[i] for c, i in sources.items()}
    scales, rates, notes = check_signals(header, sigs, contract)
    warnings += notes
    sfreq_in = Counter(rates.values()).most_common(1)[0][0]
    if len(set(rates.values())) > 1:
        odd = sorted({f"{r:g}" for r in rates.values() if r != sfreq_in})
        warnings.append(f"EEG channels at several rates ({sfreq_in:g} Hz and {', '.join(odd)} Hz); each resampled")
    return _ReadPlan(mapping, montage, sigs, scales, rates, float(sfreq_in), warnings)


def _read_once(path: str | Path, contract: SignalContract, strict: bool,
               channel_map: ChannelMap | None) -> tuple[EDFHeader, _ReadPlan, dict[int, np.ndarray], str]:
    """Header, plan, the digital samples of the planned and annotation signals, and the
    file's SHA-256, from one front-to-back read of the file."""
    with HashingReader(open_edf(path)) as f:
        header = read_header(path, strict=strict, source=f)
        plan = _plan_reading(header, contract, channel_map)
        digital = read_digital(header, [*plan.sigs.values(), *header.annotation_signals], source=f)
        return header, plan, digital, f.sha256()


def _segments(header: EDFHeader, onsets: np.ndarray | None) -> tuple[list[tuple[int, int, float]], float, list[str]]:
    """Continuous segments ``(first record, stop record, onset s)``, the time of the first
    record, and warnings; refuses time-keeping an EDF+D file cannot have.

    Raises
    ------
    CorruptHeaderError
        An EDF+D file without time-keeping annotations, with record onsets that go back,
        or with implausibly long gaps (more than :data:`MAX_GAP_S`).
    """
    p = header.path
    if not header.is_discontinuous:
        return [(0, header.n_records, 0.0)], float(onsets[0]) if onsets is not None else 0.0, []
    if onsets is None:
        raise CorruptHeaderError(p, f"{header.format} file without time-keeping annotations in every record")
    steps = np.diff(onsets)
    if (steps < header.record_duration - 1e-3).any():
        bad = int(np.argmax(steps < header.record_duration - 1e-3)) + 1
        raise CorruptHeaderError(
            p, f"record {bad} starts at {onsets[bad]:.3f} s, before the previous record ends "
            f"({onsets[bad - 1] + header.record_duration:.3f} s): record onsets must increase"
        )
    segments = contiguous_segments(onsets, header.n_records, header.record_duration)
    if len(segments) == 1:
        return segments, float(onsets[0]), []
    gaps = sum(
        segments[k + 1][2] - (segments[k][2] + (segments[k][1] - segments[k][0]) * header.record_duration)
        for k in range(len(segments) - 1)
    )
    if gaps > MAX_GAP_S:
        raise CorruptHeaderError(
            p, f"record onsets of this {header.format} file leave {gaps:.0f} s of gaps between "
            f"{len(segments)} segments; expected at most {MAX_GAP_S:.0f} s (implausible time-keeping annotations)"
        )
    return segments, float(onsets[0]), [f"discontinuous recording: {len(segments)} segments, {gaps:.1f} s of gaps masked"]


def _timeline(header: EDFHeader, segments: list[tuple[int, int, float]],
              sf_out: float) -> tuple[int, list[tuple[int, int, int, int]], np.ndarray]:
    """Output samples, each segment's ``(first record, stop record, first sample, stop
    sample)`` at ``sf_out``, and the mask of recorded samples (False in gaps)."""
    last = segments[-1]
    timeline_s = last[2] + (last[1] - last[0]) * header.record_duration
    n_out = int(np.ceil(round(timeline_s * sf_out, 6)))
    sample_mask = np.zeros(n_out, dtype=bool)
    bounds = []
    for first, stop, onset in segments:
        start_out = int(round(onset * sf_out))
        stop_out = min(n_out, int(np.ceil(round((onset + (stop - first) * header.record_duration) * sf_out, 6))))
        bounds.append((first, stop, start_out, stop_out))
        sample_mask[start_out:stop_out] = True
    return n_out, bounds, sample_mask


def _preprocess(plan: _ReadPlan, digital: dict[int, np.ndarray], bounds: list[tuple[int, int, int, int]],
                n_out: int, contract: SignalContract, threads: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Physical units, resampling and zero-phase filtering of every planned signal.

    Each segment is resampled and filtered alone (gaps stay zero). Flat and railed
    channels are masked with a warning. Returns the data ``(rows, n_out)`` float32 µV
    (rows in contract order, or in derivation order for a bipolar file), the mask of
    usable rows and the warnings.
    """
    sigs, rates, sf_out = plan.sigs, plan.rates, contract.sfreq
    n_rows = max(contract.n_channels, len(sigs))  # a bipolar file may have more derivations than electrodes
    data = np.zeros((n_rows, n_out), dtype=np.float32)
    channel_mask = np.zeros(n_rows, dtype=bool)
    filters: dict[float, FilterPlan] = {r: plan_filter(r, sf_out, contract.filters) for r in set(rates.values())}
    warnings = [w for f in filters.values() for w in f.warnings]
    order = {c: k for k, c in enumerate(contract.channels if plan.montage is None else sigs)}

    def resample(c: str) -> str | None:
        s = sigs[c]
        d = digital[s.index]
        dmin, dmax = d.min(initial=s.digital_max), d.max(initial=s.digital_min)
        if dmin == dmax:
            return f"channel '{s.label}' ({c}) is flat (constant value); masked"
        railed = np.count_nonzero((d == s.digital_min) | (d == s.digital_max))
        if railed > RAILED_FRACTION * d.size:
            return f"channel '{s.label}' ({c}) is railed at its digital limit in {100 * railed / d.size:.0f}% of samples; masked"
        ns = s.samples_per_record
        for first, stop, a, b in bounds:
            y = resample_channel(to_physical(d[first * ns : stop * ns], s, plan.scales[c], dtype=np.float32),
                                 filters[rates[c]])
            m = min(b - a, y.shape[0])
            data[order[c], a : a + m] = y[:m]
        channel_mask[order[c]] = True
        return None

    def filt(job: tuple[float, list[int], int, int]) -> None:
        rate, rows, a, b = job
        data[rows, a:b] = zero_phase_filter(data[rows, a:b], filters[rate], contract.filters)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:
        notes = list(ex.map(resample, sigs))
        # Filter blocks of channels that share an input rate (hence a filter), per segment.
        jobs = []
        for rate in filters:
            rows = [order[c] for c in sigs if rates[c] == rate and channel_mask[order[c]]]
            for k in range(0, len(rows), FILTER_BLOCK):
                jobs.extend((rate, rows[k : k + FILTER_BLOCK], a, b) for _, _, a, b in bounds)
        list(ex.map(filt, jobs))
    return data, channel_mask, warnings + [n for n in notes if n]


def read_recording(
    path: str | Path,
    contract: SignalContract | None = None,
    *,
    salt: str | None = None,
    threads: int | None = None,
    strict: bool = False,
    channel_map: ChannelMap | None = None,
) -> Recording:
    """Read an EDF/EDF+/BDF/BDF+ file into a canonical :class:`Recording`.

    Maps channels onto the contract montage, converts units to µV, resamples to the
    contract rate and filters (band-pass + notch, zero-phase). Discontinuous (EDF+D)
    files keep their segments in place: each segment is filtered alone and the gaps are
    zero-filled and masked in ``sample_mask``, never concatenated. The file's bytes are
    read once; the recording carries their SHA-256 and the de-identified header facts.

    Parameters
    ----------
    path : str or Path
        EDF/EDF+/BDF/BDF+ file.
    contract : SignalContract, optional
        Target contract (default: ``SignalContract()``, the base configuration).
    salt : str, optional
        Salt of the patient hash (see :mod:`tokenizer.deid`).
    threads : int, optional
        Threads used to preprocess channels in parallel (default :func:`default_threads`;
        a batch worker that runs one thread per process passes 1).
    strict : bool
        Refuse a file cut short inside its data, or whose record count is -1, instead of
        reading its complete records (the lost tail is then a warning and
        ``Recording.truncated_tail_s``; see :func:`tokenizer.edf_header.read_header`).
    channel_map : ChannelMap, optional
        A site's aliases of local labels (``ChannelMap.load("site_map.csv")``); the aliases
        applied are reported in ``Recording.channel_report.aliases``.

    Returns
    -------
    Recording
        Data ``(n_channels, n)`` float32 µV in canonical order with masks and
        de-identified facts.

    Raises
    ------
    tokenizer.IngestError
        A subclass naming the file, what was expected and what was found.
    """
    contract = contract or SignalContract()
    header, plan, digital, sha256 = _read_once(path, contract, strict, channel_map)
    p = header.path
    annotations, onsets = read_annotations(header, digital)
    segments, base, notes = _segments(header, onsets)
    n_out, bounds, sample_mask = _timeline(header, segments, contract.sfreq)
    data, channel_mask, filtered = _preprocess(plan, digital, bounds, n_out, contract,
                                               threads if threads is not None else default_threads())
    digital.clear()  # free the raw samples before building the Recording
    warnings = [*plan.warnings, *notes, *filtered]
    if plan.montage is not None:  # filtered derivations → potentials (both steps linear: they commute)
        data, channel_mask, converted = plan.montage.convert(data, channel_mask,
                                                             {c: s.unit for c, s in plan.sigs.items()}, contract)
        warnings += converted.warnings
    _check_usable(p, channel_mask, contract)
    deid, deid_warnings = deidentify(header.patient, header.recording, header.startdate, salt=salt)
    warnings += deid_warnings
    for w in warnings:
        log.info("%s: %s", os.path.basename(p), w)
    return Recording(
        data=data,
        channel_mask=channel_mask,
        sample_mask=sample_mask,
        sfreq=contract.sfreq,
        channels=tuple(contract.channels),
        source_path=p,
        source_sha256=sha256,
        format=header.format,
        sfreq_in=plan.sfreq_in,
        annotations=tuple(Annotation(a.onset - base, a.duration, a.text) for a in annotations),
        deid=deid,
        channel_report=converted.report if plan.montage is not None else _channel_report(plan),
        segments=tuple((a / contract.sfreq, b / contract.sfreq) for _, _, a, b in bounds),
        warnings=tuple(warnings),
        contract_digest=contract.digest(),
        truncated_tail_s=header.truncated_tail_s,
        montage=converted.summary if plan.montage is not None else None,
        nominal_duration_s=float(header.duration_s),
    )


def _check_usable(path: str, channel_mask: np.ndarray, contract: SignalContract) -> None:
    """Refuse a recording left with too few electrodes once flat and railed ones are masked.

    Raises
    ------
    TooFewChannelsError
    """
    used = int(channel_mask.sum())
    if used < contract.min_channels:
        raise TooFewChannelsError(
            path, f"expected at least {contract.min_channels} usable canonical electrodes, found {used} "
            f"after masking flat or railed channels"
        )


def _channel_report(plan: _ReadPlan) -> ChannelReport:
    """How a referential file's channels were used."""
    m = plan.mapping
    return ChannelReport(mapped=dict(m.labels), missing=list(m.missing), excluded=dict(m.excluded),
                         aliases=dict(m.aliases), reference=m.reference, reference_counts=m.reference_counts,
                         units={c: s.unit for c, s in plan.sigs.items()})
