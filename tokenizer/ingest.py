"""``read_recording``: EDF/EDF+/BDF/BDF+ file → canonical :class:`Recording`.

The file is read once, front to back: its header, then its data records (the EEG
signals and the annotation channels in the same pass), its SHA-256 computed from those
same bytes. Everything decided from the header alone (which channels, units, rates, the
bipolar conversion) is planned before any sample is read, so a file that cannot be used
is refused without reading its data.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Collection, Iterator

import numpy as np

from tokenizer.channels import ChannelMap, ChannelMapping, map_channels
from tokenizer.contract import SignalContract
from tokenizer.deid import deidentify
from tokenizer.edf_data import (
    Annotation,
    read_annotations,
    read_digital,
    to_physical,
)
from tokenizer.edf_header import (
    RECORD_COUNT_BYTES,
    EDFHeader,
    SignalHeader,
    header_field_at,
    open_edf,
    read_header,
)
from tokenizer.errors import (
    ContractMismatchError,
    CorruptHeaderError,
    DenseCapError,
    FileChangedError,
    NoDataRecordsError,
    NoEEGChannelsError,
    NoSignalsError,
    TooFewChannelsError,
    UnitError,
)
from tokenizer.hashing import HashingReader, file_sha256
from tokenizer.montage import BipolarMontage, plan_bipolar
from tokenizer.preprocess import (
    plan_filter,
    resample_channel,
    resample_ratio,
    zero_phase_filter,
)
from tokenizer.recording import ChannelReport, Recording, RecordingInfo
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
#: Seconds of signal a :class:`RecordingStream` reads and preprocesses at a time by default;
#: a recording no longer than this is one block, read whole.
BLOCK_S = 1800.0
#: Seconds of signal on each side of a streamed block that its filters see and that are then
#: dropped: the zero-phase filter's transients from the block's edges decay below float32
#: rounding well within it (``tests/test_bounded_memory.py``).
MARGIN_S = 60.0


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


@dataclass(frozen=True)
class SignalBlock:
    """A run of a streamed recording's preprocessed signal (:class:`RecordingStream`).

    Attributes
    ----------
    start : int
        Its first sample in the recording's timeline (gaps included).
    data : ndarray, shape (n_channels, n), float32
        µV in canonical order; zeros where ``channel_mask`` or ``sample_mask`` is False.
    sample_mask : ndarray, shape (n,), bool
        False in the gaps of a discontinuous file.
    channel_mask : ndarray, shape (n_channels,), bool
        The electrodes this stream carries (the same for every block).
    """

    start: int
    data: np.ndarray
    sample_mask: np.ndarray
    channel_mask: np.ndarray


@dataclass
class _Segment:
    """A continuous run of data records being preprocessed (all positions segment-relative).

    ``digital`` holds the planned signals' samples from record ``kept`` on: what the
    blocks not yet emitted, and their margins, still need.
    """

    onset: float
    start: int
    n_records: int = 0
    kept: int = 0
    emitted: int = 0
    digital: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Follow:
    """How a :class:`RecordingStream` follows a file that a recorder is still writing.

    Attributes
    ----------
    poll_s : float
        Seconds between looks at the file once every complete record is read.
    idle_timeout_s : float or None
        Stop after this many seconds without a new complete record (None: never).
    stop : callable or None
        Stop when it returns True (asked before every wait).
    lookahead_s : float
        Seconds of signal after a block that its filters see: a block is out once the
        recorder has written this much beyond its end. With the default
        (:data:`MARGIN_S`, the margin of every streamed block) the blocks are the
        finished file's read whole, within float32 rounding; a live display that cannot
        wait a minute takes less and accepts the zero-phase filter's edge transient at
        each block's end (its size is in the README). The signal before a block is
        always seen over :data:`MARGIN_S`.

    Raises
    ------
    ValueError
        A non-positive poll, timeout or margin.
    """

    poll_s: float = 1.0
    idle_timeout_s: float | None = None
    stop: Callable[[], bool] | None = None
    lookahead_s: float = MARGIN_S

    def __post_init__(self) -> None:
        if not (math.isfinite(self.poll_s) and self.poll_s > 0):
            raise ValueError(f"poll_s must be a positive number of seconds, found {self.poll_s}")
        if self.idle_timeout_s is not None and not self.idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be positive seconds or None, found {self.idle_timeout_s}")
        if not (math.isfinite(self.lookahead_s) and self.lookahead_s > 0):
            raise ValueError(f"lookahead_s must be a positive number of seconds, found {self.lookahead_s}")
        if self.stop is not None and not callable(self.stop):
            raise ValueError(f"stop must be a callable returning bool, found {type(self.stop).__name__}")


class RecordingStream:
    """An EDF/EDF+/BDF/BDF+ file read once, front to back, as blocks of canonical signal.

    The header is read and planned first (a file that cannot be used is refused before
    any sample is read), then the data records are read ``block_s`` seconds at a time
    and each continuous segment is resampled and filtered block by block: a block is
    computed with :data:`MARGIN_S` seconds of signal on either side, which its filters
    see and which are then dropped, so the blocks join into what the whole segment
    filtered at once gives, within float32 rounding. Memory is a few blocks, whatever
    the recording's length. A recording no longer than ``block_s`` (``block_s=None``:
    any) is read and preprocessed whole, as one block: :func:`read_recording`.

    Flat and railed channels are known only once every record is read. A recording
    read whole masks them before preprocessing; a longer one carries every planned
    channel, and when one turns out flat or railed at the end, :attr:`late_masked`
    names it: the consumer reads the file again with ``exclude=late_masked`` to get
    what the whole-file path gives (the only case a file is read twice).

    Parameters
    ----------
    path : str or Path
        EDF/EDF+/BDF/BDF+ file.
    contract : SignalContract, optional
        Target contract (default: the base configuration).
    salt, threads, strict, channel_map
        As for :func:`read_recording`.
    block_s : float or None
        Seconds of signal per block (None: the whole recording in one block).
    exclude : collection of str
        Planned signals (canonical names, or derivations of a bipolar file) masked from
        the start, as :attr:`late_masked` of an earlier pass names them.
    known : callable, optional
        Called with the file's SHA-256 as soon as it is known (once every record is
        read: before the first block of a recording read whole); when it returns True
        the stream stops there, :attr:`info` stays None. Not asked when following.
    follow : Follow, optional
        Read a file that a recorder is still writing (:func:`follow_recording`): its
        complete records as they appear, whatever its record count says, until the
        file stops growing or ``follow.stop`` says so; blocks come as soon as the
        records after them (``follow.lookahead_s``) are written, up to ``block_s``
        (default :data:`BLOCK_S`) each.

    Attributes
    ----------
    info : RecordingInfo or None
        What was decided about the recording, set once the blocks are exhausted.
    source_sha256 : str or None
        The file's SHA-256, once every record is read.
    late_masked : tuple of str
        Signals carried by the blocks but masked at the end (flat or railed).
    records_read : int
        Data records read so far.
    """

    def __init__(self, path: str | Path, contract: SignalContract | None = None, *, salt: str | None = None,
                 threads: int | None = None, strict: bool = False, channel_map: ChannelMap | None = None,
                 block_s: float | None = None, exclude: Collection[str] = (),
                 known: Callable[[str], bool] | None = None, follow: Follow | None = None) -> None:
        self.path = path
        self.contract = contract or SignalContract()
        self.salt, self.strict, self.channel_map = salt, strict, channel_map
        self.threads = threads if threads is not None else default_threads()
        self.block_s, self.exclude, self.known, self.follow = block_s, frozenset(exclude), known, follow
        self.info: RecordingInfo | None = None
        self.source_sha256: str | None = None
        self.late_masked: tuple[str, ...] = ()
        self.records_read = 0

    def __iter__(self) -> Iterator[SignalBlock]:
        with HashingReader(open_edf(self.path)) as f, ThreadPoolExecutor(max_workers=max(1, self.threads)) as ex:
            if self.follow is not None:
                _wait_for_header(f, self.follow)
            header = read_header(self.path, strict=self.strict, source=f, growing=self.follow is not None)
            plan = _plan_reading(header, self.contract, self.channel_map)
            run = _Run(header, plan, self.contract, ex, self.exclude,
                       MARGIN_S if self.follow is None else self.follow.lookahead_s)
            if self.follow is not None:
                yield from self._follow(f, run)
                self.info, self.late_masked = run.finish(self.source_sha256, self.salt)
                return
            total, rec_s = header.n_records, header.record_duration
            whole = self.block_s is None or total * rec_s <= self.block_s
            per_read = total if whole else max(1, int(self.block_s // rec_s))
            run.block = None if whole else run.grid(self.block_s)
            signals = [*plan.sigs.values(), *header.annotation_signals]
            done = 0
            while done < total:
                k = min(per_read, total - done)
                digital = read_digital(header, signals, k, source=f)
                done += k
                self.records_read = done
                if done == total:
                    self.source_sha256 = f.sha256()
                    if self.known is not None and self.known(self.source_sha256):
                        return
                yield from run.take(digital, last=done == total)
            self.info, self.late_masked = run.finish(self.source_sha256, self.salt)

    def _follow(self, f: HashingReader, run: _Run) -> Iterator[SignalBlock]:
        """The blocks of a growing file, as its complete records appear (:attr:`follow`)."""
        fo, header, p = self.follow, run.header, str(self.path)
        rec_s, rec_bytes = header.record_duration, header.record_bytes
        block_s = self.block_s or BLOCK_S
        run.block, run.eager = run.grid(block_s), True
        per_read = max(1, int(block_s // rec_s))
        signals = [*run.plan.sigs.values(), *header.annotation_signals]
        fd = f.fileno()
        first = os.pread(fd, header.header_bytes, 0)
        size, count = header.file_size, _record_count(p, first)
        last_growth = time.monotonic()
        while True:
            available = (size - header.header_bytes) // rec_bytes
            if available > self.records_read:
                view = replace(header, n_records=available)
                while self.records_read < available:
                    k = min(per_read, available - self.records_read)
                    digital = read_digital(view, signals, k, source=f)
                    self.records_read += k
                    yield from run.take(digital, last=False)
                last_growth = time.monotonic()
            if fo.stop is not None and fo.stop():
                break
            if fo.idle_timeout_s is not None and time.monotonic() - last_growth >= fo.idle_timeout_s:
                log.info("%s: no new data record for %g s; following stops", os.path.basename(p), fo.idle_timeout_s)
                break
            time.sleep(fo.poll_s)
            size, count = _look_again(p, fd, first, header.header_bytes + self.records_read * rec_bytes)
        done = self.records_read
        if done == 0:
            raise NoDataRecordsError(p, f"expected at least one data record, found none when following stopped "
                                        f"({size - header.header_bytes} bytes of data, a record is {rec_bytes})")
        partial = (size - header.header_bytes) % rec_bytes
        if partial:
            run.notes.append(f"incomplete last data record ({partial} of {rec_bytes} bytes) not read: the file "
                             "stopped growing mid-record")
        if count != done:
            said = "-1 (unknown)" if count == -1 else str(count)
            run.notes.append(f"the header's record count was {said} when following stopped after {done} records")
        run.header = replace(header, n_records=done, file_size=size,
                             truncated_tail_s=rec_s if partial else 0.0)
        yield from run._close(None)
        # The identity of the file is its bytes now: the count a recorder rewrote changes the
        # header hashed at the start, so such a file is hashed again.
        now = os.pread(fd, header.header_bytes, 0)
        self.source_sha256 = f.sha256() if now == first else file_sha256(p)


def follow_recording(path: str | Path, contract: SignalContract | None = None, *, poll_s: float = 1.0,
                     idle_timeout_s: float | None = None, stop: Callable[[], bool] | None = None,
                     lookahead_s: float = MARGIN_S, block_s: float = BLOCK_S, salt: str | None = None,
                     threads: int | None = None, channel_map: ChannelMap | None = None) -> RecordingStream:
    """Follow an EDF/EDF+/BDF/BDF+ file that a recorder is still writing.

    The recorder appends data records and leaves the header's record count at -1 or
    rewrites it as it goes; what is read is the file's complete records, as they appear
    (a half-written last record is read once complete). Following ends when the file
    stops growing for ``idle_timeout_s`` or when ``stop()`` says so: the record count
    cannot say that a recording has ended, since a recorder that keeps it current
    writes a count after every record, as one that closes its file writes it at the end. Each record is read once, and
    the signal comes out as :class:`SignalBlock` s in order, without gaps or repeats,
    preprocessed as :class:`RecordingStream` preprocesses a finished file: with the
    default ``lookahead_s`` the blocks joined are the finished file read whole, within
    float32 rounding. Memory stays a few blocks, however long the recording runs.

    Parameters
    ----------
    path : str or Path
        The file being written (it must exist; its header may still be on its way).
    contract : SignalContract, optional
        Target contract (default: the base configuration).
    poll_s, idle_timeout_s, stop, lookahead_s
        How to follow the file: see :class:`Follow`.
    block_s : float
        Longest block, in seconds (a backlog already in the file comes in such blocks).
    salt, threads, channel_map
        As for :func:`read_recording`.

    Returns
    -------
    RecordingStream
        Iterate it for the blocks; its :attr:`~RecordingStream.info` is set when
        following stops (the file's SHA-256 is then that of its bytes at that moment).

    Raises
    ------
    ValueError
        A non-positive ``poll_s``, ``idle_timeout_s``, ``lookahead_s`` or ``block_s``.
    tokenizer.IngestError
        While iterating: a file that is not EDF/BDF (:class:`NotEDFError`) or cannot be
        used (as :func:`read_recording`); :class:`FileChangedError` when its header
        changes other than by its record count, or the file shrinks;
        :class:`NoDataRecordsError` when it stops before its first complete record.
    """
    if not (math.isfinite(block_s) and block_s > 0):
        raise ValueError(f"block_s must be a positive number of seconds, found {block_s}")
    follow = Follow(poll_s=poll_s, idle_timeout_s=idle_timeout_s, stop=stop, lookahead_s=lookahead_s)
    return RecordingStream(path, contract, salt=salt, threads=threads, channel_map=channel_map, block_s=block_s,
                           follow=follow)


def _wait_for_header(f: HashingReader, follow: Follow) -> None:
    """Wait until the file holds its whole header (a recorder may have only created it).

    Returns as soon as the header is there, or as soon as the first bytes show it is not
    EDF/BDF, or after ``follow.idle_timeout_s`` (or ``stop``): :func:`read_header` then
    raises what is wrong.
    """
    fd, since = f.fileno(), time.monotonic()
    while True:
        size = os.fstat(fd).st_size
        head = os.pread(fd, 256, 0)
        if len(head) >= 8 and head[:8] not in (b"0       ", b"\xffBIOSEMI"):
            return
        if len(head) == 256:
            try:
                need = 256 * (int(head[252:256].decode("ascii").strip()) + 1)
            except ValueError:
                return
            if size >= need:
                return
        if (follow.stop is not None and follow.stop()) or (
                follow.idle_timeout_s is not None and time.monotonic() - since >= follow.idle_timeout_s):
            return
        time.sleep(follow.poll_s)


def _record_count(path: str, head: bytes) -> int:
    """The header's record count (-1: unknown).

    Raises
    ------
    CorruptHeaderError
        A count that is not an integer of at least -1.
    """
    text = head[RECORD_COUNT_BYTES].decode("ascii", errors="replace").strip()
    try:
        n = int(text)
    except ValueError:
        n = -2
    if n < -1:
        raise CorruptHeaderError(path, f"header field 'number of data records' should be an integer of at least -1, "
                                       f"found {text!r} while following the file")
    return n


def _look_again(path: str, fd: int, first: bytes, read_to: int) -> tuple[int, int]:
    """The size and record count of a followed file, after checking that it only grew.

    Raises
    ------
    FileChangedError
        A header that changed other than in its record count, or a file shorter than the
        bytes already read from it (truncated or replaced).
    CorruptHeaderError
        A record count that is no longer a number.
    """
    size = os.fstat(fd).st_size
    head = os.pread(fd, len(first), 0)
    if size < read_to or len(head) < len(first):
        raise FileChangedError(path, f"expected a file that only grows, found {size} bytes after {read_to} were read "
                                     "(truncated or replaced while followed)")
    if head != first:
        count = RECORD_COUNT_BYTES
        at = next((i for i, (a, b) in enumerate(zip(first, head)) if a != b and not count.start <= i < count.stop),
                  None)
        if at is not None:
            n_signals = (len(first) - 256) // 256
            was, now = first[at : at + 16].decode("latin-1"), head[at : at + 16].decode("latin-1")
            raise FileChangedError(path, f"expected a header that changes only its record count while the file is "
                                         f"written, found the {header_field_at(at, n_signals)} changed "
                                         f"(from byte {at}: {was!r} -> {now!r})")
    return size, _record_count(path, head)


class _Run:
    """The state of one pass of a :class:`RecordingStream`: segments, statistics, blocks."""

    def __init__(self, header: EDFHeader, plan: _ReadPlan, contract: SignalContract, ex: ThreadPoolExecutor,
                 exclude: frozenset[str], ahead_s: float = MARGIN_S) -> None:
        self.header, self.plan, self.contract, self.ex, self.exclude = header, plan, contract, ex, exclude
        self.sf = contract.sfreq
        self.filters = {r: plan_filter(r, self.sf, contract.filters) for r in set(plan.rates.values())}
        self.n_rows = max(contract.n_channels, len(plan.sigs))  # a bipolar file may have more derivations
        self.order = {c: k for k, c in enumerate(contract.channels if plan.montage is None else plan.sigs)}
        self.step = math.lcm(*(fp.up for fp in self.filters.values()))  # blocks start on whole input samples
        self.margin = self.grid(MARGIN_S)
        #: The margin after a block (shorter when following a recording live).
        self.ahead = self.grid(ahead_s)
        self.block: int | None = None
        #: Emit what the records read so far make ready, up to a block, not only whole blocks (following).
        self.eager = False
        #: Warnings of the reading itself (a followed file's end), joined to the recording's.
        self.notes: list[str] = []
        #: per signal: digital minimum and maximum, samples at a digital limit, samples
        self.stats = {c: [s.digital_max, s.digital_min, 0, 0] for c, s in plan.sigs.items()}
        self.usable: list[str] | None = None
        self.channel_mask = np.zeros(contract.n_channels, dtype=bool)
        self.totals = [0.0, 0.0]
        self.annotations: list[Annotation] = []
        self.onsets_ok = True
        self.first_onset: float | None = None
        self.last_onset: float | None = None
        self.segments: list[tuple[int, int]] = []
        self.seg: _Segment | None = None
        self.end = 0  # samples emitted
        self.recorded = 0
        self.records_read = 0
        self.n_segments = 1
        self.gaps = 0.0

    def grid(self, seconds: float) -> int:
        """``seconds`` of output as a whole number of :attr:`step` samples (at least one)."""
        return max(1, math.ceil(round(seconds * self.sf / self.step, 6))) * self.step

    def take(self, digital: dict[int, np.ndarray], last: bool) -> Iterator[SignalBlock]:
        """Blocks made ready by the next run of records (``last``: the file's end)."""
        h, sigs = self.header, self.plan.sigs
        for c, s in sigs.items():
            d, st = digital[s.index], self.stats[c]
            st[0], st[1] = min(st[0], d.min(initial=s.digital_max)), max(st[1], d.max(initial=s.digital_min))
            st[2] += np.count_nonzero((d == s.digital_min) | (d == s.digital_max))
            st[3] += d.size
        if self.usable is None:  # decided once, before the first block: final when every record is read
            self.usable = self._usable(final=last)
        s0 = next(iter(sigs.values()))
        n = len(digital[s0.index]) // s0.samples_per_record
        anns, onsets = read_annotations(h, digital)
        self.annotations += anns
        if onsets is None:
            self.onsets_ok = False
        elif self.first_onset is None:
            self.first_onset = float(onsets[0])
        for first, stop, onset in self._runs(onsets, n):
            if self.seg is None or onset is not None:
                yield from self._close(onset)
                self.seg = _Segment(onset or 0.0, int(round((onset or 0.0) * self.sf)))
            seg = self.seg
            for c, s in sigs.items():
                d = digital[s.index][first * s.samples_per_record : stop * s.samples_per_record]
                seg.digital[c] = np.concatenate([seg.digital[c], d]) if c in seg.digital else d
            seg.n_records += stop - first
            if not last:
                yield from self._emit(None)
        if last:
            yield from self._close(None)

    def _runs(self, onsets: np.ndarray | None, n: int) -> list[tuple[int, int, float | None]]:
        """This read's records as ``(first, stop, onset)`` runs; ``onset`` (s from the
        first record) starts a new segment, None continues the current one.

        Raises
        ------
        CorruptHeaderError
            An EDF+D file without time-keeping annotations, with record onsets that go
            back, or with implausibly long gaps (more than :data:`MAX_GAP_S`).
        """
        h, p = self.header, self.header.path
        if not h.is_discontinuous:
            return [(0, n, 0.0 if self.seg is None else None)]
        if onsets is None:
            raise CorruptHeaderError(p, f"{h.format} file without time-keeping annotations in every record")
        runs: list[tuple[int, int, float | None]] = []
        prev = self.last_onset
        for r in range(n):
            t = float(onsets[r])
            if prev is not None and t - prev < h.record_duration - 1e-3:
                raise CorruptHeaderError(
                    p, f"record {self.records_read + r} starts at {t:.3f} s, before the previous record ends "
                    f"({prev + h.record_duration:.3f} s): record onsets must increase")
            if prev is None or abs(t - (prev + h.record_duration)) > 1e-3:
                if prev is not None:
                    self.gaps += t - (prev + h.record_duration)
                    self.n_segments += 1
                runs.append((r, r + 1, t - self.first_onset))
            else:
                runs[-1:] = [(runs[-1][0], r + 1, runs[-1][2])] if runs else [(r, r + 1, None)]
            prev = t
        self.last_onset = prev
        self.records_read += n
        if self.gaps > MAX_GAP_S:
            raise CorruptHeaderError(
                p, f"record onsets of this {h.format} file leave {self.gaps:.0f} s of gaps between "
                f"{self.n_segments} segments; expected at most {MAX_GAP_S:.0f} s (implausible time-keeping annotations)"
            )
        return runs

    def _close(self, next_onset: float | None) -> Iterator[SignalBlock]:
        """Finish the current segment (the next starts at ``next_onset`` s, None at the
        file's end), then the gap up to the next one."""
        seg = self.seg
        if seg is None:
            return
        h = self.header
        stop = int(np.ceil(round((seg.onset + seg.n_records * h.record_duration) * self.sf, 6)))
        self.segments.append((seg.start, stop))
        nxt = None if next_onset is None else int(round(next_onset * self.sf))
        yield from self._emit(stop - seg.start, None if nxt is None else nxt - seg.start)
        self.seg = None
        if nxt is not None:
            yield from self._zeros(nxt)

    def _zeros(self, stop: int) -> Iterator[SignalBlock]:
        """The gap from the samples emitted to ``stop``: zeros, masked."""
        while self.end < stop:
            n = stop - self.end if self.block is None else min(self.block, stop - self.end)
            yield self._out(np.zeros((self.contract.n_channels, n), dtype=np.float32), np.zeros(n, dtype=bool))

    def _emit(self, length: int | None, cut: int | None = None) -> Iterator[SignalBlock]:
        """Blocks of the current segment that its records read so far make ready; with its
        ``length`` (its end), all that is left, none beyond ``cut`` (the next segment's start)."""
        seg, block, margin, ahead = self.seg, self.block, self.margin, self.ahead
        while True:
            a = seg.emitted
            if length is not None:
                if a >= length:
                    return
                b = length if block is None else min(length, a + block)
                hi = length if block is None else min(length, b + ahead)
            elif self.eager:
                ready = min(seg.n_records * s.samples_per_record * self.filters[self.plan.rates[c]].up
                            // self.filters[self.plan.rates[c]].down for c, s in self.plan.sigs.items())
                b = min(a + block, (ready - ahead) // self.step * self.step)
                if b <= a:
                    return
                hi = b + ahead
            else:
                b, hi = a + block, a + block + ahead
                if any(self._input(c, hi, ceil=True) > seg.n_records * s.samples_per_record
                       for c, s in self.plan.sigs.items()):
                    return
            lo = 0 if block is None else max(0, a - margin)
            keep = b - a if cut is None else max(0, min(b, cut) - a)
            rows = self._block(lo, hi, final=length is not None and hi == length)[:, a - lo : a - lo + keep]
            seg.emitted = b
            self._trim(b - margin)
            self.recorded += keep
            if self.plan.montage is None:
                data = rows[: self.contract.n_channels]
            else:  # filtered derivations → potentials (both steps linear: they commute)
                data = self.plan.montage.convert(rows, self._ok(self.usable), self._units(), self.contract,
                                                 self.totals)[0]
            yield self._out(data, np.ones(keep, dtype=bool))

    def _input(self, c: str, out: int, ceil: bool = False) -> int:
        """Input sample of signal ``c`` at output sample ``out`` (rounded down, or up)."""
        fp = self.filters[self.plan.rates[c]]
        return -(-out * fp.down // fp.up) if ceil else out * fp.down // fp.up

    def _out(self, data: np.ndarray, mask: np.ndarray) -> SignalBlock:
        block = SignalBlock(self.end, data, mask, self.channel_mask)
        self.end += data.shape[1]
        return block

    def _usable(self, final: bool) -> list[str]:
        """Signals carried: those not excluded, and, once every record is read, neither flat nor railed."""
        keep = [c for c in self.plan.sigs if c not in self.exclude and not (final and self._bad(c))]
        ok = self._ok(keep)
        if self.plan.montage is None:
            self.channel_mask = ok[: self.contract.n_channels]
        else:
            self.channel_mask = self.plan.montage.convert(np.zeros((self.n_rows, 0), np.float32), ok,
                                                          self._units(), self.contract)[1]
        return keep

    def _ok(self, names: Collection[str]) -> np.ndarray:
        """The rows of ``names`` (True), of the :attr:`n_rows` preprocessed."""
        ok = np.zeros(self.n_rows, dtype=bool)
        ok[[self.order[c] for c in names]] = True
        return ok

    def _units(self) -> dict[str, str]:
        return {c: s.unit for c, s in self.plan.sigs.items()}

    def _bad(self, c: str) -> str | None:
        """Why signal ``c`` is masked (flat or railed), from every record read; None if usable."""
        s = self.plan.sigs[c]
        dmin, dmax, railed, n = self.stats[c]
        if dmin == dmax:
            return f"channel '{s.label}' ({c}) is flat (constant value); masked"
        if railed > RAILED_FRACTION * n:
            return f"channel '{s.label}' ({c}) is railed at its digital limit in {100 * railed / n:.0f}% of samples; masked"
        return None

    def _block(self, lo: int, hi: int, final: bool) -> np.ndarray:
        """Samples ``[lo, hi)`` of the current segment's signals (derivations of a bipolar
        file), resampled and filtered; ``final``: ``hi`` is the segment's end, every record is used."""
        seg, plan = self.seg, self.plan
        out = np.zeros((self.n_rows, hi - lo), dtype=np.float32)

        def resample(c: str) -> None:
            s = plan.sigs[c]
            d, off = seg.digital[c], seg.kept * s.samples_per_record
            i_hi = len(d) + off if final else min(len(d) + off, self._input(c, hi, ceil=True))
            x = to_physical(d[self._input(c, lo) - off : i_hi - off], s, plan.scales[c], dtype=np.float32)
            y = resample_channel(x, self.filters[plan.rates[c]])
            m = min(hi - lo, y.shape[0])
            out[self.order[c], :m] = y[:m]

        def filt(job: tuple[float, list[int]]) -> None:
            rate, rows = job
            out[rows] = zero_phase_filter(out[rows], self.filters[rate], self.contract.filters)

        list(self.ex.map(resample, self.usable))
        # Filter blocks of channels that share an input rate (hence a filter).
        jobs = []
        for rate in self.filters:
            rows = [self.order[c] for c in self.usable if plan.rates[c] == rate]
            jobs.extend((rate, rows[k : k + FILTER_BLOCK]) for k in range(0, len(rows), FILTER_BLOCK))
        list(self.ex.map(filt, jobs))
        return out

    def _trim(self, lo: int) -> None:
        """Drop the records no later block needs (all before output sample ``lo``)."""
        seg = self.seg
        if self.block is None or lo <= 0:
            return
        keep = min(self._input(c, lo) // s.samples_per_record for c, s in self.plan.sigs.items())
        if keep > seg.kept:
            for c, s in self.plan.sigs.items():
                seg.digital[c] = seg.digital[c][(keep - seg.kept) * s.samples_per_record :].copy()
            seg.kept = keep

    def finish(self, sha256: str, salt: str | None) -> tuple[RecordingInfo, tuple[str, ...]]:
        """The recording's info once every block is out, and the signals masked late."""
        h, plan, contract = self.header, self.plan, self.contract
        p = h.path
        notes = [self._bad(c) for c in plan.sigs]
        bad = {c for c, n in zip(plan.sigs, notes) if n or c in self.exclude}
        late = tuple(c for c in self.usable if c in bad)
        warnings = [*plan.warnings, *self.notes]
        if len(self.segments) > 1:
            warnings.append(f"discontinuous recording: {len(self.segments)} segments, {self.gaps:.1f} s of gaps masked")
        warnings += [w for fp in self.filters.values() for w in fp.warnings]
        warnings += [n for n in notes if n]
        ok = self._ok([c for c in plan.sigs if c not in bad])
        if plan.montage is not None:  # the report of the conversion every block went through
            _, channel_mask, converted = plan.montage.convert(np.zeros((self.n_rows, 0), np.float32), ok,
                                                              self._units(), contract, self.totals)
            warnings += converted.warnings
        else:
            channel_mask = ok[: contract.n_channels]
        _check_usable(p, channel_mask, contract)
        deid, deid_warnings = deidentify(h.patient, h.recording, h.startdate, salt=salt)
        warnings += deid_warnings
        for w in warnings:
            log.info("%s: %s", os.path.basename(p), w)
        base = self.first_onset if self.onsets_ok and self.first_onset is not None else 0.0
        info = RecordingInfo(
            channel_mask=channel_mask,
            sfreq=contract.sfreq,
            channels=tuple(contract.channels),
            source_path=p,
            source_sha256=sha256,
            format=h.format,
            sfreq_in=plan.sfreq_in,
            annotations=tuple(Annotation(a.onset - base, a.duration, a.text)
                              for a in sorted(self.annotations, key=lambda a: a.onset)),
            deid=deid,
            channel_report=converted.report if plan.montage is not None else _channel_report(plan),
            segments=tuple((a / contract.sfreq, b / contract.sfreq) for a, b in self.segments),
            n_samples=self.end,
            recorded_samples=self.recorded,
            warnings=tuple(warnings),
            contract_digest=contract.digest(),
            truncated_tail_s=h.truncated_tail_s,
            montage=converted.summary if plan.montage is not None else None,
            nominal_duration_s=float(h.duration_s),
        )
        return info, late


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
    This is a :class:`RecordingStream` of one block: the whole signal is in memory (the
    embedding and tokenizing paths stream long files instead).

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
    stream = RecordingStream(path, contract, salt=salt, threads=threads, strict=strict, channel_map=channel_map)
    blocks = list(stream)
    info = stream.info
    data = blocks[0].data if len(blocks) == 1 else np.concatenate([b.data for b in blocks], axis=1)
    mask = blocks[0].sample_mask if len(blocks) == 1 else np.concatenate([b.sample_mask for b in blocks])
    return Recording(data=data, sample_mask=mask, **{f.name: getattr(info, f.name) for f in fields(RecordingInfo)})


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
