"""Channel labels as real archives write them (issue 17): label styles, a site's alias
table, the reference of every file, dense caps, and the wording of exclusions.

Every defect is shown on a real file (``tests/data/real``, ``tests.factories.real_file``) relabelled the way the
defect shows up in the wild (header bytes rewritten, data untouched), or on a BioSemi-style
label set.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from clef.synthetic.recordings import eeg_signals
from tests.factories import biosemi_abc_labels, real_file, relabel
from tokenizer import (
    CANONICAL_CHANNELS,
    ChannelMap,
    ChannelMapError,
    DenseCapError,
    NoEEGChannelsError,
    SignalContract,
    classify_label,
    read_header,
    read_recording,
)
from tokenizer.channels import map_channels
from tokenizer.edf_writer import EDFSignal, write_edf
from tokenizer.ingest import plan_channels

NK = "nk_chtypes_edfplusC.edf"  # Nihon Kohden, 'EEG Fp1-Ref' ..., 5 s at 200 Hz
TUH = "header_only_white_noise/e2b_aaaaaaac_s001_t000_sample.edf"  # TUH, 'EEG FP1-LE' ...
CHB = "header_only_white_noise/e2b_chb01_01_sample.edf"  # CHB-MIT double banana
EEGMAT = "eegmat_Subject00_2.edf"  # 'EEG Fp1' ... and 'EEG A2-A1'
BCI = "eegmmidb_bci2000_overlap_annot.edf"  # 64 EEG channels, BCI2000 'Fc5.'

_NK_EEG = re.compile(r"^EEG (\w+)-Ref$")


def _nk_relabelled(tmp_path: Path, style) -> Path:
    """The Nihon Kohden file with every 'EEG <site>-Ref' label written in another style."""
    def new(old: str) -> str:
        m = _NK_EEG.match(old)
        return style(m.group(1)) if m else old
    return relabel(real_file(NK), tmp_path / "relabelled.edf", new)


def _mapping(path: Path, contract: SignalContract | None = None, channel_map: ChannelMap | None = None):
    return plan_channels(read_header(path), contract or SignalContract(), channel_map=channel_map)


# -- 1. label styles --------------------------------------------------------------------------

STYLES = {
    "MASS linked-ear reference": (lambda s: f"EEG {s}-LER", "LE"),
    "MASS computed linked ears": (lambda s: f"EEG {s}-CLE", "LE"),
    "mastoids": (lambda s: f"EEG {s}-MAST", "MAST"),
    "linked mastoids": (lambda s: f"EEG {s}-M1M2", "MAST"),
    "space before the reference": (lambda s: f"EEG {s.upper()} REF", "REF"),
    "underscores": (lambda s: f"EEG_{s}_REF", "REF"),
    "dash after the type": (lambda s: f"EEG-{s}", "unknown"),
    "dots": (lambda s: f"EEG.{s}.AVG", "AVG"),
}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_label_styles_read_the_same_signals_as_the_original(tmp_path, style):
    write, reference = STYLES[style]
    original = read_recording(real_file(NK), threads=1)
    rec = read_recording(_nk_relabelled(tmp_path, write), threads=1)
    assert list(rec.channel_report.mapped) == list(CANONICAL_CHANNELS)
    assert all(not reason.startswith("not a recognised") for lab, reason in rec.channel_report.excluded.items()
               if lab.startswith("EEG"))
    np.testing.assert_array_equal(rec.data, original.data)
    assert rec.summary()["reference"] == reference and rec.channel_report.reference_counts == {reference: 19}


def test_original_styles_keep_their_reference():
    assert _mapping(real_file(NK)).reference == "REF"
    assert _mapping(real_file(TUH)).reference == "LE"
    assert _mapping(real_file(EEGMAT)).reference == "unknown"
    assert map_channels([s.label for s in read_header(real_file(CHB)).signals], CANONICAL_CHANNELS,
                        [s.is_annotation for s in read_header(real_file(CHB)).signals]).reference == "bipolar"


# -- 2. a site's alias table --------------------------------------------------------------------

def _local_names(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The NK file as a site that numbers its inputs writes it: 'EEG In01'..'EEG In19'."""
    labels = [s.label for s in read_header(real_file(NK)).data_signals]
    sites = {}
    for k, lab in enumerate(labels):
        m = _NK_EEG.match(lab)
        name = classify_label(lab, CANONICAL_CHANNELS)[1] if m else None
        if name is not None:
            sites[f"EEG In{k + 1:02d}"] = name
    path = relabel(real_file(NK), tmp_path / "local.edf",
                   [f"EEG In{k + 1:02d}" if f"EEG In{k + 1:02d}" in sites else lab for k, lab in enumerate(labels)])
    return path, sites


def _write_map(path: Path, sites: dict[str, str], extra: dict[str, str]) -> Path:
    both = {**sites, **extra}
    if path.suffix == ".csv":
        path.write_text("# site map of the EEG lab\nlabel,site\n" + "".join(f"{k},{v}\n" for k, v in both.items()))
    elif path.suffix == ".yaml":
        path.write_text("".join(f"'{k}': {v}\n" for k, v in both.items()))
    else:
        path.write_text(json.dumps(both, indent=2))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".yaml", ".json"])
def test_channel_map_maps_a_sites_own_labels(tmp_path, suffix):
    path, sites = _local_names(tmp_path)
    with pytest.raises(NoEEGChannelsError):
        read_recording(path, threads=1)
    cmap = ChannelMap.load(_write_map(tmp_path / f"site{suffix}", sites, {"POL E": "exclude"}))
    rec = read_recording(path, threads=1, channel_map=cmap)
    np.testing.assert_array_equal(rec.data, read_recording(real_file(NK), threads=1).data)
    s = rec.summary()
    assert s["channels"]["aliases"] == {**sites, "POL E": "exclude"}
    assert s["channels"]["mapped"]["C3"] == next(k for k, v in sites.items() if v == "C3")
    assert re.fullmatch(rf"excluded by the channel map \(.*site{suffix} line \d+\)",
                        s["channels"]["excluded_reasons"]["POL E"])
    assert s["reference"] == "unknown"  # 'EEG In07' names no reference


def test_channel_map_matches_bare_names_and_new_temporal_names():
    cmap = ChannelMap.from_dict({"X3": "c3", "X7": "T7", "EEG Fp1-LER": "exclude"})
    m = map_channels(["EEG X3-LER", "POL X7", "EEG Fp1-LER", "EEG Fp1-CLE"], CANONICAL_CHANNELS, channel_map=cmap)
    assert m.labels == {"Fp1": "EEG Fp1-CLE", "T3": "POL X7", "C3": "EEG X3-LER"}
    assert m.aliases == {"EEG X3-LER": "C3", "POL X7": "T7", "EEG Fp1-LER": "exclude"}
    assert m.references == {"Fp1": "LE", "T3": "unknown", "C3": "LE"} and m.reference == "mixed"


@pytest.mark.parametrize("name, text, message", [
    ("m.csv", "label,site\nEEG X1,C3\nEEG X2,Cx3\n",
     r"m\.csv line 3: target 'Cx3' of 'EEG X2' is not one of the 19 sites"),
    ("m.csv", "EEG X1,C3\n\n# a comment\neeg  x1,C4\n", r"m\.csv line 4: label 'eeg  x1' given twice \(first .*line 1"),
    ("m.csv", "EEG X1,C3,extra\n", r"m\.csv line 1: two columns 'label,site' expected, found 3"),
    ("m.csv", ",C3\n", r"m\.csv line 1: a local label expected"),
    ("m.yaml", "EEG X1: C3\nEEG X2: C4\nEEG X1: O1\n", r"m\.yaml line 3: label 'EEG X1' given twice \(first .*line 1"),
    ("m.yaml", "EEG X1: [C3]\n", r"m\.yaml line 1: 'label: site' expected"),
    ("m.json", '{\n  "EEG X1": "C3",\n  "EEG X1": "C4"\n}\n', r"m\.json line 3: label 'EEG X1' given twice"),
    ("m.json", '{"EEG X1": 3}', r"m\.json: one object"),
    ("m.ini", "EEG X1 = C3\n", r"expected a \.csv, \.tsv, \.yaml, \.yml or \.json file"),
])
def test_channel_map_errors_name_the_file_and_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ChannelMapError, match=message):
        ChannelMap.load(tmp_path / name)


def test_inspect_reports_aliases_and_refuses_a_bad_map_before_reading(tmp_path):
    from clef.cli import app

    path, sites = _local_names(tmp_path)
    good = _write_map(tmp_path / "site.csv", sites, {})
    r = CliRunner().invoke(app, ["inspect", "--json", "--channel-map", str(good), str(path)])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    assert rec["ok"] and rec["channels"]["aliases"] == sites and len(rec["channels"]["mapped"]) == 19
    r = CliRunner().invoke(app, ["inspect", "--channel-map", str(good), str(path)])
    assert "channel map applied to 19" in r.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("EEG In01,Fp1\nEEG In02,Fp9\n")
    r = CliRunner().invoke(app, ["inspect", "--json", "--channel-map", str(bad), str(path)])
    assert r.exit_code == 2 and "bad.csv line 2: target 'Fp9'" in r.output and '"ok"' not in r.stdout


# -- 3. the reference of every file ---------------------------------------------------------------

def test_mixed_references_give_one_warning_with_counts(tmp_path):
    n = {"k": 0}

    def half_and_half(site: str) -> str:
        n["k"] += 1
        return f"EEG {site}-LE" if n["k"] <= 10 else f"EEG {site}-AVG"

    rec = read_recording(_nk_relabelled(tmp_path, half_and_half), threads=1)
    mixed = [w for w in rec.warnings if "several references" in w]
    assert mixed == ["channels recorded against several references: LE (10 channels), AVG (9 channels); "
                     "reference recorded as 'mixed'"]
    assert rec.summary()["reference"] == "mixed" and rec.summary()["reference_counts"] == {"LE": 10, "AVG": 9}


def test_channels_against_a_common_scalp_electrode_are_referential(tmp_path):
    path = _nk_relabelled(tmp_path, lambda s: f"EEG {s}-Cz")
    m = _mapping(path)
    assert len(m.mapped) == 18 and m.missing == ["Cz"] and m.reference == "CZ" and not m.bipolar
    assert m.excluded["EEG Cz-Cz"] == "the reference electrode CZ against itself (no signal)"
    chb = read_header(real_file(CHB))  # a double banana stays bipolar
    dbl = map_channels([s.label for s in chb.signals], CANONICAL_CHANNELS, [s.is_annotation for s in chb.signals])
    assert not dbl.mapped and len(dbl.bipolar) == 23


@pytest.fixture
def reference_store(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A store of a TUH archive that mixes its AR (labelled '-REF') and LE recordings, plus
    a part written before the reference column existed."""
    from tokenizer.header_facts import read_header_facts
    from services.store_writer import StoreWriter, utc_now

    files = {"tuh_le": relabel(real_file(TUH), tmp_path / "a/tuh_le.edf", {}),
             "tuh_ar": relabel(real_file(TUH), tmp_path / "a/tuh_ar.edf", lambda lab: lab.replace("-LE", "-REF")),
             "nk_ler": _nk_relabelled(tmp_path, lambda s: f"EEG {s}-LER")}
    refs = {sid: read_header_facts(p).reference for sid, p in files.items()}
    store = tmp_path / "store"
    rng = np.random.default_rng(0)
    sids = [*files, "legacy"]
    with StoreWriter(store, tmp_path / "a") as w:
        for i, sid in enumerate(sids):
            sha = f"{i:064x}"
            v = rng.normal(size=8).tolist()
            row = {"session_id": sid, "source_sha256": sha, "path": f"{sid}.edf", "format": "EDF+C", "duration_s": 2.0,
                   "n_windows": 1, "sex": None, "age_years": None, "patient_hash": None, "site": "S1",
                   "setting": None, "reference": refs.get(sid)}
            w.commit([{"path": f"{sid}.edf", "sha256": sha, "size": 1, "status": "done", "error_kind": None,
                       "error": None, "seconds": 0.1, "updated": utc_now(), "model_id": "m" * 16, "mtime_ns": 0}],
                     [row], [{"session_id": sid, "source_sha256": sha, "model_id": "m" * 16, "vector": v,
                              "window_vectors": [v], "n_windows": 1}],
                     models={"m" * 16: {"dim": 8, "checkpoint": "synthetic"}})
    legacy = sorted((store / "sessions").glob("part-*.parquet"))[-1]
    pl.read_parquet(legacy).drop("reference").write_parquet(legacy)  # as written before the column
    return store, refs


def test_store_keeps_the_reference_and_search_filters_on_it(reference_store):
    pytest.importorskip("faiss")
    from services.search import CohortSearcher, FilterError, parse_filter, parse_filters
    from services.store import EmbeddingStore

    store, refs = reference_store
    assert refs == {"tuh_le": "LE", "tuh_ar": "REF", "nk_ler": "LE"}
    sessions = EmbeddingStore(store).sessions()
    assert dict(zip(sessions["session_id"], sessions["reference"])) == {**refs, "legacy": None}
    s = CohortSearcher(store)
    found = s.search_session("tuh_ar", 10, parse_filters(["reference=LE"]))
    assert sorted(n.session_id for n in found) == ["nk_ler", "tuh_le"] and {n.reference for n in found} == {"LE"}
    assert [n.session_id for n in s.search_session("tuh_le", 10, parse_filters(["reference=ler,REF"]))] \
        in (["tuh_ar", "nk_ler"], ["nk_ler", "tuh_ar"])
    with pytest.raises(FilterError, match="filter reference: one of REF, LE, AVG"):
        parse_filter("reference=linked-ear")

    from services.cli import register

    app = typer.Typer()
    register(app)
    r = CliRunner().invoke(app, ["search", str(store), "--session", "nk_ler", "--reference", "REF", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert [(n["session_id"], n["reference"]) for n in out["neighbours"]] == [("tuh_ar", "REF")]


# -- 4. dense caps ---------------------------------------------------------------------------------

def _biosemi_256(path: Path) -> Path:
    """A BioSemi 256 ABC recording as ActiView writes it: A1..H32, EXG1..EXG8 and Status."""
    sigs = eeg_signals(2, 256, style="bare", channels=biosemi_abc_labels("ABCDEFGH"))
    sigs += [EDFSignal(f"EXG{k}", s.data, 256) for k, s in enumerate(sigs[:8], 1)]
    sigs.append(EDFSignal("Status", np.zeros(512), 256, unit="Boolean", physical_min=-8388608,
                          physical_max=8388607))
    return write_edf(path, sigs, fmt="BDF")


def test_biosemi_abc_cap_is_refused_not_read_with_six_misplaced_channels(tmp_path):
    path = _biosemi_256(tmp_path / "biosemi256.bdf")
    labels = [s.label for s in read_header(path).signals]
    plain = {lab: classify_label(lab, CANONICAL_CHANNELS)[:2] for lab in ("C3", "C4", "F3", "F4", "F7", "F8")}
    assert all(kind == "canonical" for kind, _ in plain.values())  # what a name-only mapper would take
    with pytest.raises(DenseCapError, match=r"BioSemi ABC cap \(256 electrodes named A1\.\.H32\).*not the 10-20 "
                                            r"sites or ear references") as info:
        read_recording(path, SignalContract(min_channels=6))
    assert info.value.kind == "dense_cap"
    m = map_channels(labels, CANONICAL_CHANNELS)
    assert not m.mapped and "cap position" in m.excluded["C3"] and "cap position" in m.excluded["A1"]
    assert "reference electrode" not in m.excluded["A1"] and "BioSemi external" in m.excluded["EXG1"]


def test_biosemi_relabelled_real_file_is_refused_then_read_through_a_channel_map(tmp_path):
    header = read_header(real_file(BCI))
    abc = biosemi_abc_labels("AB")  # the 64-electrode ABC cap
    path = relabel(real_file(BCI), tmp_path / "abc64.edf", abc)
    with pytest.raises(DenseCapError, match=r"BioSemi ABC cap \(64 electrodes named A1\.\.B32\).*--channel-map"):
        read_recording(path)
    # the electrodes at the 10-20 positions, as the lab's cap layout names them
    layout = {a: classify_label(s.label, CANONICAL_CHANNELS)[1] for a, s in zip(abc, header.data_signals)}
    cmap = ChannelMap.from_dict({a: site for a, site in layout.items() if site is not None})
    assert len(cmap) == 19
    rec = read_recording(path, channel_map=cmap)
    np.testing.assert_array_equal(rec.data, read_recording(real_file(BCI)).data)
    assert _mapping(real_file(BCI)).dense_cap is None  # its own C1..C6, F1..F8 are 10-10 names, not a cap


def test_egi_net_is_refused(tmp_path):
    path = relabel(real_file(BCI), tmp_path / "egi.edf", [f"E{k}" for k in range(1, 65)])
    with pytest.raises(DenseCapError, match=r"EGI geodesic net \(64 electrodes named E1\.\.E64\)"):
        read_recording(path)


# -- 5. wording ------------------------------------------------------------------------------------

def test_ear_to_ear_derivation_is_named_as_such():
    reason = _mapping(real_file(EEGMAT)).excluded["EEG A2-A1"]
    assert reason.startswith("ear-to-ear derivation (A2-A1)") and "reference electrode" not in reason


def test_tuh_eye_leads_are_eog(tmp_path):
    as_le = _mapping(real_file(TUH)).excluded
    path = relabel(real_file(TUH), tmp_path / "tuh_ar.edf", lambda lab: lab.replace("-LE", "-REF"))
    as_ref = _mapping(path).excluded
    for reasons, suffix in ((as_le, "LE"), (as_ref, "REF")):
        assert reasons[f"EEG LUC-{suffix}"] == reasons[f"EEG RLC-{suffix}"] == "non-EEG channel (EOG)"
    assert as_ref["EEG A1-REF"].startswith("reference electrode A1")
