"""PHI audit (issue 9): the whole demo, run on the synthetic hospital's fake PHI, leaks none of it.

``clef demo --quick`` runs every stage and every demo step (ingestion, tokenizer,
pretraining, alignment, benchmark, store + index) on a 16-patient hospital. The planted
PHI is collected from the hospital's hidden truth (``edf_phi``: MRN, family and given
name, birth date; ``report_phi``: what the reports were written with), from its FHIR
``Patient`` resources and from the awkward vendor files of the ingestion stage. Then every
file the demo wrote outside its input archive is decoded (Parquet columns and key-value
metadata, text, JSON, safetensors headers, PNG text chunks, NumPy archives, FAISS index and
id map, anything else as raw bytes), together with the console and log output and the
JSON the HTTP service answers (an upload of a hospital EDF, whose header carries PHI,
included), and none of the planted strings may occur.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.factories import free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

KEY = "phi-audit-key-0123456789abcdef"
#: The input archives of the demo (they carry the planted PHI on purpose; ``long``: the
#: trend step's synthetic long recording, whose header has a fake birthdate).
INPUTS = ("hospital", "awkward", "long")
#: PHI planted in the ingestion stage's awkward vendor files (``clef.synthetic.awkward``).
AWKWARD_PHI = ("NK0001", "Alice_Example", "Tech_Bob", "MRN00012345", "Carl_Sample")
AWKWARD_BIRTHS = (dt.date(1967, 2, 12), dt.date(1949, 8, 3), dt.date(2015, 6, 30))
MIN_LEN = 4
#: Planted names that are also words the platform writes (a race class, a colour in a legend):
#: looked for only in compound forms ("Brown, Omar", "Omar Brown", "Brown_Omar").
COMMON_WORDS = frozenset({"Black", "White", "Brown", "Green", "Young", "King", "Hill", "Hall", "Baker", "Walker",
                          "Mark", "Grace", "Mason", "Long", "Rose"})
TEXT_SUFFIXES = {".json", ".jsonl", ".yaml", ".yml", ".md", ".csv", ".txt", ".log", ".html", ".sha256", ".tsv"}


# --------------------------------------------------------------------------------------
# Planted PHI
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    """One planted PHI string and how to look for it."""

    text: str
    origin: str
    pattern: re.Pattern[str]

    @property
    def needle(self) -> str:
        """Lower-case text: a fast test before the pattern (every match contains it)."""
        return self.text.lower()


def _boundary(text: str) -> tuple[str, str]:
    """Lookarounds so ``Carter`` does not match ``Cartersville`` nor an MRN a longer number."""
    def side(c: str, ahead: bool) -> str:
        cls = "A-Za-z" if c.isalpha() else "0-9" if c.isdigit() else ""
        if not cls:
            return ""
        return f"(?![{cls}])" if ahead else f"(?<![{cls}])"
    return side(text[0], False), side(text[-1], True)


def _planted(text: str, origin: str) -> Planted:
    """Single names match as written (Title) and in capitals; anything compound ignoring case."""
    left, right = _boundary(text)
    body = re.escape(text)
    if re.fullmatch(r"[A-Za-z'\-]+", text):  # one name: its written forms (common words stay clear)
        body = f"(?:{re.escape(text)}|{re.escape(text.upper())})"
        return Planted(text, origin, re.compile(left + body + right))
    return Planted(text, origin, re.compile(left + body + right, re.IGNORECASE))


def date_forms(d: dt.date) -> set[str]:
    """Full-date spellings a header, a report or a table may use."""
    return {d.isoformat(), d.strftime("%Y%m%d"), d.strftime("%Y/%m/%d"), d.strftime("%d-%b-%Y").upper(),
            d.strftime("%d-%b-%Y"), d.strftime("%d.%m.%Y"), d.strftime("%m/%d/%Y"), d.strftime("%d/%m/%Y"),
            d.strftime("%d %b %Y"), d.strftime("%B ") + f"{d.day}, {d.year}", f"{d.day} " + d.strftime("%B %Y")}


def _date(text: str) -> dt.date | None:
    for fmt in ("%d-%b-%Y", "%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y", "%B %d, %Y"):
        try:
            return dt.datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    return None


def collect_phi(hospital: Path) -> list[Planted]:
    """Every planted PHI string of the demo's inputs (at least ``MIN_LEN`` characters)."""
    found: dict[str, str] = {}

    def add(text: str | None, origin: str) -> None:
        text = (text or "").strip()
        if len(text) >= MIN_LEN and text not in found and text not in COMMON_WORDS:
            found[text] = origin

    def add_date(d: dt.date, origin: str) -> None:
        for form in date_forms(d):
            add(form, origin)

    def add_name(family: str, given: str, origin: str) -> None:
        for s in (family, given, f"{given} {family}", f"{family}, {given}", f"{family}_{given}",
                  f"{family}^{given}"):
            add(s, origin)

    truth = pl.read_parquet(hospital / "truth.parquet")
    for row in truth.select("session_id", "edf_phi", "report_phi").iter_rows(named=True):
        where = f"truth {row['session_id']}"
        mrn, family, given, birth = row["edf_phi"]
        add(mrn, f"{where} edf_phi MRN")
        add_name(family, given, f"{where} edf_phi name")
        add(f"Tech_{family[:3]}", f"{where} EDF technician")
        add_date(dt.datetime.strptime(birth, "%d-%b-%Y").date(), f"{where} edf_phi birth date")
        for item in row["report_phi"] or []:
            add(item, f"{where} report_phi")
            d = _date(item)
            if d is not None:
                add_date(d, f"{where} report_phi date")
            for doctor in re.findall(r"\b[A-Z]\. ([A-Z][A-Za-z'\-]+)", item):  # "Dr. E. Delgado", "T. Petrov, MD"
                add(doctor, f"{where} report_phi physician")
    for f in sorted((hospital / "fhir").glob("*.json")):
        bundle = json.loads(f.read_text())
        for entry in bundle.get("entry", []):
            res = entry.get("resource", {})
            if res.get("resourceType") != "Patient":
                continue
            where = f"FHIR Patient {res.get('id')}"
            for name in res.get("name", []):
                for given in name.get("given", []):
                    add_name(name.get("family", ""), given, f"{where} name")
                add(name.get("text"), f"{where} name")
            if res.get("birthDate"):
                add_date(dt.date.fromisoformat(res["birthDate"]), f"{where} birthDate")
            for ident in res.get("identifier", []):
                add(ident.get("value"), f"{where} identifier")
    for s in AWKWARD_PHI:
        add(s, "awkward vendor files")
    for d in AWKWARD_BIRTHS:
        add_date(d, "awkward vendor files birth date")
    return [_planted(t, o) for t, o in found.items()]


# --------------------------------------------------------------------------------------
# Decoders: every file as the texts it carries
# --------------------------------------------------------------------------------------


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _parquet_texts(path: Path) -> Iterator[tuple[str, str]]:
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    kv = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in (meta.metadata or {}).items()}
    yield "parquet key-value metadata", _json_text(kv)
    yield "parquet schema", str(meta.schema)
    df = pl.read_parquet(path)
    for name in df.columns:
        yield f"column {name}", name + "\n" + _json_text(df[name].to_list())


def _safetensors_texts(path: Path) -> Iterator[tuple[str, str]]:
    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = fh.read(n).decode("utf-8", "replace")
    yield "safetensors header", header
    try:
        yield "safetensors header (decoded)", _json_text(json.loads(header))
    except ValueError:
        pass


def png_text_chunks(data: bytes) -> list[str]:
    """The text of a PNG's ``tEXt``, ``zTXt``, ``iTXt`` and ``eXIf`` chunks."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    out, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"tEXt":
            out.append(body.decode("latin-1").replace("\0", ": "))
        elif kind == b"zTXt":
            key, rest = body.split(b"\0", 1)
            out.append(key.decode("latin-1") + ": " + zlib.decompress(rest[1:]).decode("latin-1"))
        elif kind == b"iTXt":
            key, rest = body.split(b"\0", 1)
            compressed, rest = rest[0], rest[2:]
            _lang, _tkey, text = rest.split(b"\0", 2)
            out.append(key.decode("utf-8", "replace") + ": "
                       + (zlib.decompress(text) if compressed else text).decode("utf-8", "replace"))
        elif kind == b"eXIf":
            out.append(body.decode("latin-1"))
        elif kind == b"IEND":
            break
    return out


def _npz_texts(path: Path) -> Iterator[tuple[str, str]]:
    with zipfile.ZipFile(path) as z:
        yield "npz member names", " ".join(z.namelist())
        for name in z.namelist():
            with z.open(name) as fh:
                head = fh.read(512)
            yield f"npz {name} header", head.decode("latin-1")
    with np.load(path, allow_pickle=False) as arrays:
        for key in arrays.files:
            a = arrays[key]
            if a.dtype.kind in "US":
                yield f"npz {key}", _json_text(a.tolist())


def _edf_header_text(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(256)
        try:
            ns = int(head[252:256].decode("ascii").strip())
        except ValueError:
            ns = 0
        return (head + fh.read(256 * max(ns, 0))).decode("latin-1")


def file_texts(path: Path) -> Iterator[tuple[str, str]]:
    """``(what, text)`` pairs of everything ``path`` carries that a reader could see."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_texts(path)
    elif suffix == ".safetensors":
        yield from _safetensors_texts(path)
    elif suffix == ".png":
        yield "PNG text chunks", "\n".join(png_text_chunks(path.read_bytes()))
    elif suffix == ".npz":
        yield from _npz_texts(path)
    elif suffix in (".edf", ".bdf"):
        yield "EDF header", _edf_header_text(path)
    elif suffix in TEXT_SUFFIXES:
        text = path.read_bytes().decode("utf-8", "replace")
        yield "text", text
        if suffix == ".json":
            try:
                yield "JSON (decoded)", _json_text(json.loads(text))
            except ValueError:
                pass
        elif suffix == ".jsonl":
            yield "JSON lines (decoded)", _json_text([json.loads(x) for x in text.splitlines() if x.strip()])
    else:  # FAISS indexes, locks, pickles, anything unknown: the raw bytes
        yield "raw bytes", path.read_bytes().decode("latin-1")
        if suffix == ".faiss":
            import faiss

            index = faiss.read_index(str(path))
            if hasattr(faiss, "downcast_index"):
                index = faiss.downcast_index(index)
            if hasattr(index, "id_map"):
                yield "FAISS id map", _json_text(faiss.vector_to_array(index.id_map).tolist())


@dataclass(frozen=True)
class Leak:
    where: str
    what: str
    planted: str
    origin: str
    context: str

    def __str__(self) -> str:
        return f"{self.where} [{self.what}]: {self.planted!r} ({self.origin}) in ...{self.context}..."


def scan_text(text: str, phi: list[Planted], where: str, what: str) -> list[Leak]:
    leaks = []
    low = text.lower()
    for p in phi:
        if p.needle not in low:
            continue
        m = p.pattern.search(text)
        if m:
            ctx = text[max(0, m.start() - 40):m.end() + 40].replace("\n", " ")
            leaks.append(Leak(where, what, p.text, p.origin, ctx))
    return leaks


def scan_tree(root: Path, phi: list[Planted], skip: tuple[str, ...] = ()) -> tuple[list[Leak], int]:
    """Scan every file under ``root`` (and every relative path) except the top-level folders ``skip``."""
    leaks: list[Leak] = []
    n = 0
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in skip:
            continue
        leaks += scan_text(str(rel), phi, str(rel), "file name")
        if not path.is_file():
            continue
        n += 1
        for what, text in file_texts(path):
            leaks += scan_text(text, phi, str(rel), what)
    return leaks, n


def _report(leaks: list[Leak], limit: int = 40) -> str:
    lines = [str(x) for x in leaks[:limit]]
    more = f"\n... and {len(leaks) - limit} more" if len(leaks) > limit else ""
    return f"{len(leaks)} PHI leak(s):\n" + "\n".join(lines) + more


# --------------------------------------------------------------------------------------
# The demo, run once
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoRun:
    root: Path
    out: Path
    home: Path
    console: Path
    seconds: float


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """``clef --debug demo --quick`` in-process, its console and every log record kept in a file."""
    from typer.testing import CliRunner

    from clef.cli import app

    root = tmp_path_factory.mktemp("phi_audit")
    out, home, console = root / "demo", root / "clef_home", root / "console.log"
    root_logger = logging.getLogger()
    handlers, level = root_logger.handlers[:], root_logger.level
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLEF_HOME", str(home))
        mp.setenv("CLEF_DEID_SALT", "phi-audit-salt")
        mp.setenv("COLUMNS", "1000")  # rich wraps at the console width: keep log lines whole
        t0 = time.perf_counter()
        try:  # --debug: every log record of every level goes to the captured stderr
            result = CliRunner().invoke(app, ["--debug", "demo", "--out", str(out), "--quick"])
        finally:  # the CLI's logging.basicConfig(force=True) must not outlive this module
            root_logger.handlers[:] = handlers
            root_logger.setLevel(level)
        seconds = time.perf_counter() - t0
        console.write_text(result.output)
        if result.exit_code != 0:
            import traceback

            tb = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
            pytest.fail(f"clef demo --quick failed ({result.exit_code}):\n{result.output[-3000:]}\n{tb}")
        yield DemoRun(root, out, home, console, seconds)


@pytest.fixture(scope="module")
def phi(demo_run: DemoRun) -> list[Planted]:
    planted = collect_phi(demo_run.out / "hospital")
    assert len(planted) > 100
    return planted


def test_demo_wrote_every_kind_of_output(demo_run: DemoRun) -> None:
    out = demo_run.out
    suffixes = {p.suffix for p in out.rglob("*") if p.is_file() and p.relative_to(out).parts[0] not in INPUTS}
    assert {".parquet", ".json", ".jsonl", ".yaml", ".md", ".png", ".safetensors", ".faiss", ".npz"} <= suffixes
    assert (out / "benchmark" / "results" / "results.parquet").is_file()
    # the benchmark step: a verified suite, the four models (recon-only found from the aligned
    # checkpoint's init hash), AUROCs, a report naming the models
    from benchmark_tasks.suite import load_suite

    suite = load_suite(out / "benchmark" / "suite.yaml")
    suite.verify()
    results = pl.read_parquet(out / "benchmark" / "results" / "results.parquet")
    assert set(results["model"]) == {"aligned", "recon_only", "random_encoder", "bandpower", "oracle"}
    assert set(results["task"]) <= {t.name for t in suite.tasks} and results["auroc"].is_between(0, 1).all()
    report = (out / "benchmark" / "results" / "report.md").read_text()
    assert "aligned" in report and "bandpower" in report
    assert list((out / "benchmark" / "results" / "probes").glob("*.json"))
    assert list((out / "benchmark" / "results" / "plots").glob("*.png"))
    assert (out / "store" / "store.json").is_file() and list((out / "store" / "index").rglob("*.faiss"))
    text = demo_run.console.read_text()
    assert "demo finished" in text and "suite:" in text
    assert demo_run.seconds < 600
    # the results page a person opens: stage times, and links that all resolve inside the folder
    page = (out / "README.md").read_text()
    assert "| stage | minutes |" in page and "Benchmark report" in page
    links = re.findall(r"\]\(([^)]+)\)", page)
    assert any(link.endswith(".png") for link in links) and "benchmark/results/report.md" in links
    assert all((out / link).exists() for link in links), [link for link in links if not (out / link).exists()]
    assert "demo finished" in (out / "demo_log.html").read_text()
    # issue 19: a trend figure and an explanation figure on the results page, each with its summary in words
    assert "## Trend of a long recording" in page and "## Explanation of a probe score" in page
    assert "trend/trend.png" in links and "explain/explanation.png" in links
    from clef.synthetic.hospital import load_truth

    onset = load_truth(out / "long")["onset_s"][0]
    assert f"burst suppression at {onset / 60:.1f} min" in page and "**Flagged changes:**" in page
    changes = pl.read_parquet(out / "trend" / "changes.parquet")
    stated = [f"{c['signal']}: a change at {c['onset_s'] / 60:.1f} min" for c in changes.iter_rows(named=True)]
    assert all(s in page for s in stated) if stated else "no change flagged" in page, stated
    explanation = json.loads((out / "explain" / "explanation.json").read_text())
    summary = explanation["summary"]
    assert f"top band: {summary['top_band'] or 'none'}" in page
    assert f"hemisphere: {summary['hemisphere'] or 'neither'}" in page
    assert explanation["examples"] and explanation["examples"][0]["session_id"] in page
    for png in (out / "trend" / "trend.png", out / "explain" / "explanation.png"):
        assert_nontrivial_png(png)


def assert_nontrivial_png(path: Path) -> None:
    """A real figure: a PNG of at least 600 × 400 pixels that is not one flat colour."""
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 600 and im.height >= 400, (path, im.format, im.size)
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    assert pixels.std() > 10 and len(np.unique(pixels)) > 50, f"{path}: a blank or near-blank image"


def test_no_output_file_carries_planted_phi(demo_run: DemoRun, phi: list[Planted]) -> None:
    leaks, n = scan_tree(demo_run.out, phi, skip=INPUTS)
    assert n > 50
    home_leaks, _ = scan_tree(demo_run.home, phi) if demo_run.home.is_dir() else ([], 0)
    assert not leaks + home_leaks, _report(leaks + home_leaks)


def test_console_and_logs_carry_no_planted_phi(demo_run: DemoRun, phi: list[Planted]) -> None:
    text = demo_run.console.read_text()
    assert "DEBUG" in text or "INFO" in text  # --debug: every log record of the run is in there
    where = "console + logs of clef --debug demo --quick"
    leaks = scan_text(text, phi, where, "text") + scan_text(" ".join(text.split()), phi, where, "text, unwrapped")
    assert not leaks, _report(leaks)


# --------------------------------------------------------------------------------------
# The HTTP service over the demo's store
# --------------------------------------------------------------------------------------


def test_http_responses_carry_no_planted_phi(demo_run: DemoRun, phi: list[Planted],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    import httpx

    from services.api import create_app
    from services.config import ServeConfig

    monkeypatch.setenv("CLEF_HOME", str(demo_run.home))  # whatever the service caches is scanned below
    out = demo_run.out
    truth = pl.read_parquet(out / "hospital" / "truth.parquet")
    cfg = ServeConfig(store=out / "store", checkpoint=out / "runs" / "aligned", probes=out / "benchmark" / "results")
    logs = demo_run.root / "serve.log"
    handler = logging.FileHandler(logs)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.DEBUG)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cfg, [KEY]), host="127.0.0.1", port=port, log_level="debug"))
    thread = threading.Thread(target=server.run, daemon=True)
    responses: list[tuple[str, httpx.Response]] = []
    try:
        thread.start()
        wait_until(lambda: server.started, 60, message="the server started")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY}, timeout=120) as c:
            responses.append(("GET /health", c.get("/health")))
            responses.append(("GET /tasks", c.get("/tasks")))
            tasks = [t["task"] for t in responses[-1][1].json()["tasks"]]
            assert tasks, "the benchmark's probes should be served"
            sid = truth["session_id"][0]
            for path in (f"/sessions/{sid}", f"/sessions/{sid}/similar?k=5",
                         f"/sessions/{sid}/similar?k=5&per_patient=true", f"/sessions/{sid}/probabilities",
                         f"/sessions/{sid}/probabilities?task={tasks[0]}", f"/sessions/{sid}/findings"):
                responses.append((f"GET {path}", c.get(path)))
            # a hospital EDF: its header carries the patient's name, MRN and birth date
            row = truth.filter(pl.col("path").str.ends_with(".edf")).row(0, named=True)
            data = (out / "hospital" / row["path"]).read_bytes()
            assert row["edf_phi"][1].encode() in data  # the upload really carries PHI
            for route in ("/embed", "/probabilities", "/similar"):
                r = c.post(route, files={"file": (Path(row["path"]).name, data, "application/octet-stream")})
                responses.append((f"POST {route}", r))
            responses.append(("GET /sessions/unknown (404)", c.get("/sessions/no-such-session")))
    finally:
        server.should_exit = True
        thread.join(20)
        root_logger.removeHandler(handler)
        root_logger.setLevel(level)
        handler.close()
    leaks: list[Leak] = []
    for name, r in responses:
        assert r.status_code in (200, 404), (name, r.status_code, r.text[:500])
        if r.status_code == 200:
            assert r.json() is not None
        headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        leaks += scan_text(r.text, phi, f"HTTP {name}", "body")
        leaks += scan_text(headers, phi, f"HTTP {name}", "headers")
    assert [n for n, r in responses if r.status_code != 200] == ["GET /sessions/unknown (404)"]
    leaks += scan_text(logs.read_text(), phi, "service logs", "text")
    after, _ = scan_tree(out, phi, skip=INPUTS)  # the service wrote nothing with PHI either (uploads, index)
    after += scan_tree(demo_run.home, phi)[0] if demo_run.home.is_dir() else []
    assert not leaks + after, _report(leaks + after)


# --------------------------------------------------------------------------------------
# Positive control: the audit does fail when PHI is there
# --------------------------------------------------------------------------------------


def _one(out: Path, pattern: str) -> Path:
    found = sorted(p for p in out.glob(pattern) if p.is_file())
    assert found, pattern
    return found[0]


def test_the_scanner_finds_planted_phi(demo_run: DemoRun, phi: list[Planted], tmp_path: Path) -> None:
    """Copies of one output file of each kind are clean; with a planted name, MRN or birth date each is caught."""
    import pyarrow.parquet as pq
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo
    from safetensors.numpy import load_file, save_file

    out = demo_run.out
    truth = pl.read_parquet(out / "hospital" / "truth.parquet")
    mrn, family, given, birth = truth["edf_phi"][0]
    name = f"{given} {family}"
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns(*INPUTS, "cache", "tokens"))
    leaks, n = scan_tree(copy, phi)
    assert n > 20 and not leaks, _report(leaks)

    planted: dict[str, str] = {}
    # JSON
    f = _one(copy, "runs/aligned/meta.json")
    meta = json.loads(f.read_text())
    meta["note"] = f"trained for {name}"
    f.write_text(json.dumps(meta))
    planted[str(f.relative_to(copy))] = name
    # Parquet: a list-of-struct column, and key-value metadata
    f = _one(copy, "store/sessions/*.parquet")
    df = pl.read_parquet(f)
    df = df.with_columns(pl.Series("extra", [[{"k": "id", "v": mrn if i == 1 else "x"}] for i in range(df.height)]))
    df.write_parquet(f)
    planted[str(f.relative_to(copy))] = mrn
    f = _one(copy, "embeddings.parquet")
    table = pq.read_table(f)
    pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), b"source": birth.encode()}), f)
    planted[str(f.relative_to(copy))] = birth
    # PNG text chunk (birth date written the ISO way)
    f = _one(copy, "plots/*.png")
    iso = dt.datetime.strptime(birth, "%d-%b-%Y").date().isoformat()
    info = PngInfo()
    info.add_itxt("Description", f"patient born {iso}")
    with Image.open(f) as img:
        img.load()
        img.save(f, pnginfo=info)
    planted[str(f.relative_to(copy))] = iso
    # safetensors header metadata
    f = _one(copy, "runs/pretrain/model.safetensors")
    save_file(load_file(f), f, metadata={"patient": f"{family.upper()}, {given.upper()}"})
    planted[str(f.relative_to(copy))] = f"{family}, {given}"
    # FAISS index: raw bytes appended
    f = _one(copy, "store/index/*/*.faiss")
    f.write_bytes(f.read_bytes() + mrn.encode())
    planted[str(f.relative_to(copy))] = mrn
    # a file name
    f = _one(copy, "benchmark/results/report.md")
    f.rename(f.with_name(f"report_{family}.md"))
    planted[str(f.with_name(f"report_{family}.md").relative_to(copy))] = family

    leaks, _ = scan_tree(copy, phi)
    caught = {(x.where, x.planted.lower()) for x in leaks}
    for where, text in planted.items():
        assert (where, text.lower()) in caught, (where, text, _report(leaks))
    assert {x.where for x in leaks} == set(planted), _report(leaks)
    # the console scanner too, and no false alarm on words that merely contain a name
    assert scan_text(f"embedding {family}_{given}.edf", phi, "console", "text")
    assert not scan_text(f"{family.lower()}ish {mrn}0", phi, "console", "text")
