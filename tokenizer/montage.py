"""Bipolar montages back to potentials: least squares over the derivation graph.

A bipolar derivation ``a-b`` records ``v_a - v_b``. Stacking a file's derivations as the
rows of an incidence matrix ``D`` (+1 at the first electrode, -1 at the second), the
potentials ``v`` of one connected group of electrodes solve ``D v = d`` up to one common
constant, which no bipolar recording can know. The minimum-norm least-squares solution
``pinv(D) d`` fixes that constant so that the potentials sum to zero: the common average
reference. The matrix is computed once per file and applied to every sample.

Electrodes outside the largest connected group (the Fz-Cz-Pz chain of a classic double
banana, say) have no known potential relative to the rest and are masked. Repeats of a
derivation (CHB-MIT records ``T8-P8`` twice and ``P7-T7`` beside ``T7-P7``) are dropped.
When the derivations form loops, least squares also measures how far they disagree
around them (``loop residual``): near zero for a consistent montage, large when a label
or a polarity is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tokenizer.channels import ChannelMapping, classify_label, normalise_label
from tokenizer.contract import SignalContract
from tokenizer.errors import BipolarMontageError
from tokenizer.recording import ChannelReport

#: Loop residual (fraction of the derivations' RMS) above which a conversion is warned about.
LOOP_RESIDUAL_WARN = 0.05
#: Samples converted per block (bounds the temporary arrays of long recordings).
BLOCK = 1 << 16


@dataclass(frozen=True, eq=False)
class BipolarConversion:
    """The matrix taking a set of bipolar derivations to average-referenced potentials.

    Attributes
    ----------
    electrodes : tuple of str
        Electrodes recovered (those of ``keep`` in the largest connected group), in the
        order of ``keep``.
    matrix : ndarray, shape (n_electrodes, n_used), float64
        ``v = matrix @ d[used]``; every column sums to zero (average reference).
    used : tuple of int
        Indices of the input derivations that enter ``matrix``.
    nodes : tuple of str
        Every electrode of the largest connected group, the ones not in ``keep``
        (e.g. FT9) included: they link the others but are not returned.
    masked : tuple of str
        Electrodes of ``keep`` that appear in a derivation but lie outside the largest
        group (their potential relative to it is unknown).
    duplicates : dict
        ``{index: index of the derivation it repeats}`` (same pair, either polarity).
    disconnected : tuple of int
        Indices of derivations outside the largest group.
    residual : ndarray, shape (n_used, n_used), float64
        ``I - D pinv(D)``: the part of the derivations no set of potentials explains
        (zero when the derivations have no loop).
    """

    electrodes: tuple[str, ...]
    matrix: np.ndarray
    used: tuple[int, ...]
    nodes: tuple[str, ...]
    masked: tuple[str, ...]
    duplicates: dict[int, int]
    disconnected: tuple[int, ...]
    residual: np.ndarray

    @property
    def n_loops(self) -> int:
        """Independent loops of the largest group (derivations beyond a spanning tree)."""
        return len(self.used) - (len(self.nodes) - 1)


def bipolar_to_average(pairs: Sequence[tuple[str, str]], keep: Sequence[str]) -> BipolarConversion:
    """Least-squares inversion of bipolar derivations to average-referenced potentials.

    Parameters
    ----------
    pairs : sequence of (str, str)
        One ``(first, second)`` electrode pair per derivation (the derivation records
        ``first - second``), names already normalised (``T7`` and ``T3`` are different
        names here).
    keep : sequence of str
        Electrodes to return, in order; the average reference is taken over those
        recovered. Other electrodes (FT9 ...) still link the graph.

    Returns
    -------
    BipolarConversion
        The conversion matrix of the largest connected group (most electrodes of
        ``keep``, then most electrodes, then first seen).

    Raises
    ------
    ValueError
        No pairs, a pair that is not two distinct names, or an empty or repeated ``keep``.

    Examples
    --------
    >>> c = bipolar_to_average([("Fp1", "F3"), ("F3", "C3")], ["Fp1", "F3", "C3"])
    >>> np.round(c.matrix @ np.array([1.0, 2.0]), 6)   # Fp1-F3 = 1, F3-C3 = 2
    array([ 1.333333,  0.333333, -1.666667])
    """
    pairs = [tuple(p) for p in pairs]
    if not pairs:
        raise ValueError("pairs must hold at least one derivation, found none")
    for p in pairs:
        if len(p) != 2 or not all(isinstance(e, str) and e for e in p) or p[0] == p[1]:
            raise ValueError(f"each pair must be two distinct electrode names, found {p!r}")
    keep = list(keep)
    if not keep or len(set(keep)) != len(keep):
        raise ValueError(f"keep must be a non-empty list of distinct names, found {keep!r}")

    first_of: dict[frozenset[str], int] = {}
    duplicates: dict[int, int] = {}
    unique: list[int] = []
    for i, (a, b) in enumerate(pairs):
        key = frozenset((a, b))
        if key in first_of:
            duplicates[i] = first_of[key]
        else:
            first_of[key] = i
            unique.append(i)

    # Connected groups by union-find over the unique derivations.
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    order: list[str] = []
    for i in unique:
        for e in pairs[i]:
            if e not in parent:
                order.append(e)
            root(e)
        ra, rb = root(pairs[i][0]), root(pairs[i][1])
        if ra != rb:
            parent[rb] = ra
    groups: dict[str, list[str]] = {}
    for e in order:
        groups.setdefault(root(e), []).append(e)
    kept = set(keep)
    best = max(groups.values(), key=lambda g: (len(kept.intersection(g)), len(g)))  # max keeps the first of ties
    nodes = set(best)

    used = tuple(i for i in unique if pairs[i][0] in nodes)
    disconnected = tuple(i for i in unique if pairs[i][0] not in nodes)
    col = {e: k for k, e in enumerate(best)}
    D = np.zeros((len(used), len(best)))
    for r, i in enumerate(used):
        D[r, col[pairs[i][0]]] = 1.0
        D[r, col[pairs[i][1]]] = -1.0
    # Minimum-norm least squares: the solution orthogonal to the constant vector, i.e.
    # potentials with zero mean over the group.
    pinv = np.linalg.pinv(D)
    electrodes = tuple(e for e in keep if e in nodes)
    rows = pinv[[col[e] for e in electrodes]]
    # Re-centre over the returned electrodes only, so that linking electrodes outside
    # ``keep`` (FT9, FT10) do not enter the average.
    matrix = rows - rows.mean(axis=0, keepdims=True)
    seen = {e for i in unique for e in pairs[i]}
    masked = tuple(e for e in keep if e in seen and e not in nodes)
    residual = np.eye(len(used)) - D @ pinv
    return BipolarConversion(electrodes=electrodes, matrix=matrix, used=used, nodes=tuple(best),
                             masked=masked, duplicates=duplicates, disconnected=disconnected,
                             residual=residual)


def derivation_pair(label: str, channels: Sequence[str]) -> tuple[str, str] | None:
    """The two electrodes of a bipolar label, named as the contract names them.

    ``"FP1-F7"`` → ``("Fp1", "F7")``, ``"EEG T7-P7"`` → ``("T3", "T5")`` under the
    default contract (T7/P7 are the aliases of T3/T5); electrodes outside the contract
    keep their label in upper case (``"T7-FT9"`` → ``("T3", "FT9")``). None when the
    label is not a derivation between two recognised electrodes.
    """
    bare = normalise_label(label)
    left, sep, right = bare.partition("-")
    if not sep or not left or not right or "-" in right:
        return None
    names = []
    for side in (left, right):
        kind, name, _ = classify_label(side, channels)
        if kind == "canonical" and name is not None:
            names.append(name)
        elif kind in ("extra_eeg", "reference"):
            names.append(side.upper())
        else:
            return None
    return (names[0], names[1]) if names[0] != names[1] else None


@dataclass(frozen=True)
class BipolarResult:
    """What :meth:`BipolarMontage.convert` did: the channel report, the summary and warnings.

    Attributes
    ----------
    report : ChannelReport
        ``mapped`` is ``{electrode: the derivations touching it}``; ``excluded`` names
        every derivation or channel not used, with the reason; ``units`` the unit of the
        derivations each electrode was computed from.
    summary : dict
        The ``montage`` record of :meth:`Recording.summary`.
    warnings : list of str
        The conversion in one line, and a loop-residual warning when derivations disagree.
    """

    report: ChannelReport
    summary: dict[str, object]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class BipolarMontage:
    """A file's bipolar derivations, planned from its header (see :func:`plan_bipolar`).

    Attributes
    ----------
    path : str
        The file.
    labels : tuple of str
        Every source label, in file order.
    annotation : tuple of bool
        True for annotation channels.
    pairs : dict
        ``{source index: (electrode, electrode)}`` for every bipolar derivation.
    sources : dict
        ``{derivation name: source index}`` of the derivations to read (the unique ones
        of the largest connected group), in file order.
    header_plan : BipolarConversion
        The conversion of all the file's derivations, in the order of ``pairs`` (before
        flat or railed derivations are known).
    ignored : dict
        ``{source index: reason}`` for referential channels left out of a mixed file.
    aliases : dict
        ``{source label: target}`` a site's channel map applied (reported as is).
    """

    path: str
    labels: tuple[str, ...]
    annotation: tuple[bool, ...]
    pairs: dict[int, tuple[str, str]]
    sources: dict[str, int]
    header_plan: BipolarConversion
    ignored: dict[int, str]
    aliases: dict[str, str] = field(default_factory=dict)

    def convert(self, data: np.ndarray, ok: np.ndarray, units: dict[str, str], contract: SignalContract,
                totals: list[float] | None = None) -> tuple[np.ndarray, np.ndarray, BipolarResult]:
        """Turn the preprocessed derivations into average-referenced potentials, in place.

        Parameters
        ----------
        data : ndarray, shape (n_rows, n_samples), float32
            Row ``k`` holds the ``k``-th derivation of :attr:`sources` (resampled and
            filtered: both are linear and the same for every derivation, so they commute
            with the conversion); ``n_rows >= max(contract.n_channels, len(sources))``.
        ok : ndarray of bool, shape (n_rows,)
            False for derivations masked as flat or railed (left out of the graph).
        units : dict
            ``{derivation name: unit as written}``.
        contract : SignalContract
            Channel order and ``min_channels``.
        totals : list of two floats, optional
            Squared loop residual and squared signal summed over the blocks of a streamed
            recording converted so far, updated in place: the residual reported is that
            of every block given.

        Returns
        -------
        data : ndarray, shape (n_channels, n_samples), float32
            Potentials in contract order (the first rows of the input), zeros where masked.
        channel_mask : ndarray of bool, shape (n_channels,)
        result : BipolarResult

        Raises
        ------
        BipolarMontageError
            Fewer than ``contract.min_channels`` electrodes remain connected once flat or
            railed derivations are left out.
        """
        rows = max(contract.n_channels, len(self.sources))
        if data.ndim != 2 or data.shape[0] < rows:
            raise ValueError(f"data must have at least {rows} rows, found shape {data.shape}")
        if ok.shape != (data.shape[0],):
            raise ValueError(f"ok must have shape ({data.shape[0]},), found {ok.shape}")
        names = list(self.sources)
        live = [k for k in range(len(names)) if ok[k]]
        lost = [names[k] for k in range(len(names)) if not ok[k]]
        if not live:
            raise BipolarMontageError(self.path, f"every derivation of the bipolar montage is flat or railed "
                                                 f"({', '.join(lost)}); nothing to convert")
        conv = bipolar_to_average([self.pairs[self.sources[names[k]]] for k in live], contract.channels)
        if len(conv.electrodes) < contract.min_channels:
            raise BipolarMontageError(
                self.path, f"expected a bipolar montage connecting at least {contract.min_channels} electrodes; "
                f"once the flat or railed derivations ({', '.join(lost)}) are left out, the largest connected group "
                f"holds {len(conv.electrodes)} ({', '.join(conv.electrodes)})")
        rows_in = [live[j] for j in conv.used]
        order = {c: k for k, c in enumerate(contract.channels)}
        rows_out = [order[e] for e in conv.electrodes]
        w = conv.matrix.astype(np.float32)
        r = conv.residual.astype(np.float32) if conv.n_loops > 0 else None
        res2, tot2 = totals if totals is not None else (0.0, 0.0)
        n_ch = contract.n_channels
        for a in range(0, data.shape[1], BLOCK):
            b = min(a + BLOCK, data.shape[1])
            d = data[rows_in, a:b]  # a copy: these rows are overwritten below
            if r is not None:
                res2 += float(np.square(r @ d, dtype=np.float64).sum())
                tot2 += float(np.square(d, dtype=np.float64).sum())
            data[:n_ch, a:b] = 0.0
            data[rows_out, a:b] = w @ d
        if totals is not None:
            totals[:] = [res2, tot2]
        channel_mask = np.zeros(n_ch, dtype=bool)
        channel_mask[rows_out] = True
        residual = float(np.sqrt(res2 / tot2)) if r is not None and tot2 > 0 else None
        used = [self.sources[names[k]] for k in rows_in]
        return data[:n_ch], channel_mask, self._result(conv, used, lost, residual, units, contract)

    def _result(self, conv: BipolarConversion, used: list[int], lost: list[str], residual: float | None,
                units: dict[str, str], contract: SignalContract) -> BipolarResult:
        """Channel report, summary and warnings of one conversion (``used``: source indices)."""
        src = list(self.pairs)
        reasons = dict(self.ignored)
        for i, j in self.header_plan.duplicates.items():
            reasons[src[i]] = f"repeats the derivation '{self.labels[src[j]]}' (dropped)"
        for name in lost:
            reasons[self.sources[name]] = "bipolar derivation flat or railed (left out of the conversion)"
        for i in src:
            reasons.setdefault(i, "bipolar derivation not connected to the largest group of electrodes")
        excluded: dict[str, str] = {}
        for i, label in enumerate(self.labels):
            if self.annotation[i] or i in used:
                continue
            key, n = label, 2
            while key in excluded:  # repeats labelled as map_channels labels them
                key, n = f"{label} #{n}", n + 1
            excluded[key] = reasons.get(i) or classify_label(label, contract.channels)[2]
        by_src = {i: name for name, i in self.sources.items()}
        unit = "/".join(sorted({units[by_src[i]] for i in used}))
        seen = {e for p in self.pairs.values() for e in p}
        masked = [c for c in contract.channels if c in seen and c not in conv.electrodes]
        duplicates = [self.labels[src[i]] for i in sorted(self.header_plan.duplicates)]
        summary: dict[str, object] = {
            "kind": "bipolar",
            "reference": "average",
            "derivations": len(self.pairs),
            "derivations_used": len(used),
            "electrodes_recovered": len(conv.electrodes),
            "recovered": list(conv.electrodes),
            "masked": masked,
            "duplicates": duplicates,
            "loops": conv.n_loops,
            "loop_residual": None if residual is None else round(residual, 6),
        }
        text = (f"converted from a bipolar montage: {len(conv.electrodes)} electrodes (common average reference) "
                f"from {len(used)} of {len(self.pairs)} derivations")
        if masked:
            text += f"; masked, not connected to the other electrodes: {', '.join(masked)}"
        if duplicates:
            text += f"; repeated derivations dropped: {', '.join(duplicates)}"
        if self.ignored:
            text += f"; {len(self.ignored)} referential channel(s) left out"
        warnings = [text]
        if residual is not None and residual > LOOP_RESIDUAL_WARN:
            warnings.append(
                f"the bipolar derivations disagree around the montage's {conv.n_loops} loop(s): "
                f"{100 * residual:.1f}% of their RMS fits no set of potentials; a label or a polarity may be wrong")
        report = ChannelReport(
            mapped={e: ", ".join(self.labels[i] for i in used if e in self.pairs[i]) for e in conv.electrodes},
            missing=[c for c in contract.channels if c not in conv.electrodes],
            excluded=excluded,
            units={e: unit for e in conv.electrodes},
            aliases=dict(self.aliases),
            reference="bipolar",  # as recorded; the potentials returned are average-referenced
        )
        return BipolarResult(report=report, summary=summary, warnings=warnings)


def plan_bipolar(path: str, labels: Sequence[str], annotation: Sequence[bool], mapping: ChannelMapping,
                 contract: SignalContract) -> BipolarMontage | None:
    """Decide from a header whether a file is converted from its bipolar derivations.

    A file is converted when it has bipolar derivations and fewer referential electrodes
    than ``contract.min_channels``; its referential channels, if any, are then left out
    (their reference is unknown, so they cannot join the average). A file with enough
    referential electrodes is read as referential and its derivations are excluded.

    Parameters
    ----------
    path : str
        The file (for messages).
    labels, annotation : sequence
        Every source label and whether it is an annotation channel, in file order.
    mapping : ChannelMapping
        The referential mapping of the same labels (:func:`tokenizer.channels.map_channels`).
    contract : SignalContract
        Channel names and ``min_channels``.

    Returns
    -------
    BipolarMontage or None
        None when the file is read as referential.

    Raises
    ------
    BipolarMontageError
        The derivations cannot give ``contract.min_channels`` electrodes: the largest
        connected group of electrodes is too small (the reason names the groups).
    """
    if len(labels) != len(annotation):
        raise ValueError(f"labels and annotation differ in length ({len(labels)} vs {len(annotation)})")
    if not mapping.bipolar or len(mapping.mapped) >= contract.min_channels:
        return None
    pairs: dict[int, tuple[str, str]] = {}
    for i, label in enumerate(labels):
        if annotation[i]:
            continue
        pair = derivation_pair(label, contract.channels)
        if pair is not None and classify_label(label, contract.channels)[0] == "bipolar":
            pairs[i] = pair
    if not pairs:  # classified bipolar, but no pair could be read: nothing to convert
        raise BipolarMontageError(path, f"found {len(mapping.bipolar)} bipolar derivation(s) such as "
                                        f"'{mapping.bipolar[0]}' but none between two recognised electrodes")
    src = list(pairs)
    plan = bipolar_to_average([pairs[i] for i in src], contract.channels)
    n_ref = len(mapping.mapped)
    if len(plan.electrodes) < contract.min_channels:
        groups = _groups_text([pairs[i] for i in src], contract.channels)
        ref = f" and {n_ref} referential electrode(s)" if n_ref else ""
        raise BipolarMontageError(
            path, f"expected referential EEG channels or a bipolar montage connecting at least "
            f"{contract.min_channels} of the contract's electrodes; found {len(pairs)} bipolar derivations "
            f"(such as '{labels[src[0]]}'){ref}, whose largest connected group holds {len(plan.electrodes)} "
            f"({groups}); electrodes in different groups have no common reference, so the montage cannot be "
            f"converted to potentials")
    ignored = {i: f"referential channel left out: only {n_ref} referential electrode(s) (fewer than "
                  f"{contract.min_channels}), so the file is converted from its {len(pairs)} bipolar derivations"
               for i in mapping.mapped.values()}
    sources = {"-".join(pairs[src[k]]): src[k] for k in plan.used}
    return BipolarMontage(path=path, labels=tuple(labels), annotation=tuple(bool(a) for a in annotation),
                          pairs=pairs, sources=sources, header_plan=plan, ignored=ignored,
                          aliases=dict(mapping.aliases))


def _groups_text(pairs: list[tuple[str, str]], channels: Sequence[str]) -> str:
    """Connected groups, largest first, as ``Fp1 F7 T3 | Fp2 F8 T4``."""
    remaining = list(pairs)
    out = []
    while remaining:
        conv = bipolar_to_average(remaining, channels)
        out.append(" ".join(conv.nodes))
        taken = set(conv.used) | set(conv.duplicates)
        remaining = [p for k, p in enumerate(remaining) if k not in taken]
    return " | ".join(out)
