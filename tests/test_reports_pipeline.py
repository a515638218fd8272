"""Reading report files safely and processing batches of them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reports import (
    DEFAULT_MAX_BYTES,
    ExtractiveSummariser,
    ProcessedReport,
    ReportError,
    SummariserConfig,
    process_report,
    process_reports,
    read_report,
)

REPORT = """EEG REPORT

Patient: Emily Lewis   MRN: 85026458   Date of study: 07/16/2013   Referring physician: Dr. L. Nakamura

HISTORY: A 21-year-old woman with generalized epilepsy. Indication: breakthrough seizure.

MEDICATIONS: levetiracetam.

DESCRIPTION: Background activity is symmetric and well organized. The PDR is 9.8 Hz. There are generalized
spike-wave discharges (GSW) at 3 Hz. Stage 2 sleep was recorded. No seizures were captured.

IMPRESSION: Abnormal EEG due to:
1) Generalized spike-and-wave discharges

COMMENT: The generalized discharges support a generalized epilepsy. Emily Lewis was informed.

Interpreted by: K. Kaplan, MD   Date: 07/16/2013
"""


def test_process_report_order_and_content() -> None:
    p = process_report(REPORT)
    assert isinstance(p, ProcessedReport)
    for phi in ("Emily", "Lewis", "85026458", "07/16/2013", "Nakamura", "Kaplan"):
        assert phi not in p.scrubbed and phi not in p.electrographic and phi not in p.summary
    assert "Emily Lewis" in p.sections.correlation  # sections are the raw text, kept for inspection
    assert "levetiracetam" not in p.electrographic and "breakthrough" not in p.summary
    assert p.electrographic.startswith("Background activity")
    assert {k for k, v in p.labels.items() if v} == {"ied_generalized", "sleep"}
    assert ("seizure", "absent") in {(m.name, m.status) for m in p.findings}
    assert "spike-wave discharges" in p.summary


def test_process_report_uses_the_given_summariser() -> None:
    class Upper:
        def summarise(self, text: str) -> str:
            return text.upper()

        def summarise_many(self, texts):
            return [t.upper() for t in texts]

    p = process_report(REPORT, Upper())
    assert p.summary == p.electrographic.upper()
    short = process_report(REPORT, ExtractiveSummariser(SummariserConfig(max_sentences=1)))
    assert short.summary.count("discharges") >= 1 and len(short.summary) < len(p.electrographic)


def test_read_report_encodings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    utf8 = tmp_path / "utf8.txt"
    utf8.write_text("Électroencéphalogramme: normal EEG, 9 Hz α rhythm.", encoding="utf-8")
    assert read_report(utf8).startswith("Électro")
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffIMPRESSION: Normal EEG.".encode())
    assert read_report(bom) == "IMPRESSION: Normal EEG."
    cp = tmp_path / "cp1252.txt"
    cp.write_bytes("IMPRESSION: Normal EEG \u2013 r\u00e9sum\u00e9 \u201cok\u201d.".encode("cp1252"))
    with caplog.at_level(logging.WARNING, logger="reports.pipeline"):
        text = read_report(cp)
    assert text == "IMPRESSION: Normal EEG \u2013 r\u00e9sum\u00e9 \u201cok\u201d."
    assert "not valid UTF-8; decoded as cp1252" in caplog.text
    latin = tmp_path / "latin1.txt"
    latin.write_bytes(b"Normal EEG \x81\x8d\x8f.")  # bytes undefined in cp1252
    assert read_report(latin).startswith("Normal EEG")
    utf16 = tmp_path / "utf16.txt"
    utf16.write_text("IMPRESSION: Normal EEG.", encoding="utf-16")
    assert read_report(utf16) == "IMPRESSION: Normal EEG."


@pytest.mark.parametrize("content,kind", [
    (b"", "empty"),
    (b"   \n\t\r\n  ", "empty"),
    (b"IMPRESSION\x00\x00 binary", "binary"),
    (bytes(range(1, 32)) * 20 + b"Normal EEG", "binary"),
])
def test_read_report_refuses_non_reports(tmp_path: Path, content: bytes, kind: str) -> None:
    f = tmp_path / "r.txt"
    f.write_bytes(content)
    with pytest.raises(ReportError) as e:
        read_report(f)
    assert e.value.kind == kind and e.value.path == str(f)
    assert isinstance(e.value, ValueError)


def test_read_report_size_and_paths(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("Normal EEG. " * 200)
    assert read_report(big, max_bytes=10_000)
    with pytest.raises(ReportError, match="larger than the 1000-byte limit") as e:
        read_report(big, max_bytes=1000)
    assert e.value.kind == "too_large"
    huge = tmp_path / "huge.txt"
    huge.write_bytes(b"a" * (DEFAULT_MAX_BYTES + 1))
    with pytest.raises(ReportError, match="too|larger"):
        read_report(huge)
    with pytest.raises(ReportError, match="no such report file") as e:
        read_report(tmp_path / "missing.txt")
    assert e.value.kind == "not_found"
    with pytest.raises(ReportError) as e:
        read_report(tmp_path)
    assert e.value.kind == "not_a_file"
    with pytest.raises(ValueError, match="max_bytes"):
        read_report(big, max_bytes=0)


def test_process_reports_skips_and_records(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = tmp_path / "good.txt"
    good.write_text(REPORT)
    empty = tmp_path / "empty.txt"
    empty.write_text("  ")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    paths = [good, empty, tmp_path / "missing.txt", binary, good]
    with caplog.at_level(logging.WARNING, logger="reports.pipeline"):
        done, skipped = process_reports(paths)
    assert list(done) == [str(good)]
    assert len(done) + len(skipped) == len(paths)  # nothing lost
    reasons = dict(skipped[:3])
    assert reasons[str(empty)].startswith("empty:")
    assert reasons[str(tmp_path / "missing.txt")].startswith("not_found:")
    assert reasons[str(binary)].startswith("binary:")
    assert skipped[3] == (str(good), "duplicate path (already processed)")
    assert "skipped report" in caplog.text
    with pytest.raises(ReportError) as e:
        process_reports([good, empty], on_error="raise")
    assert e.value.kind == "empty"
    with pytest.raises(ValueError, match="on_error"):
        process_reports([good], on_error="ignore")  # type: ignore[arg-type]


def test_process_reports_with_progress_and_failing_summariser(tmp_path: Path) -> None:
    files = []
    for i in range(3):
        f = tmp_path / f"r{i}.txt"
        f.write_text(REPORT)
        files.append(f)
    done, skipped = process_reports(files, progress=True)
    assert len(done) == 3 and not skipped

    class Broken:
        def summarise(self, text: str) -> str:
            raise RuntimeError("model crashed")

        def summarise_many(self, texts):
            return [self.summarise(t) for t in texts]

    done, skipped = process_reports(files[:1], Broken())
    assert not done and skipped == [(str(files[0]), "error: RuntimeError: model crashed")]
    with pytest.raises(RuntimeError, match="model crashed"):
        process_reports(files[:1], Broken(), on_error="raise")
    assert process_reports([]) == ({}, [])


def test_reports_imports_nothing_from_other_rooms() -> None:
    import ast

    import reports

    root = Path(reports.__file__).parent
    for py in root.glob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in {"clef", "tokenizer", "ehr", "benchmark_tasks", "services"}, (py, name)
