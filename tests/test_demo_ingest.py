import json

from clef.cli.demo import demo_ingest


def test_demo_ingest_stage_writes_inspections_and_pages(tmp_path):
    records = demo_ingest(tmp_path)
    assert [r["ok"] for r in records] == [True, True, True, True, False, False]
    lines = [json.loads(x) for x in (tmp_path / "inspect.jsonl").read_text().splitlines()]
    assert lines == records
    assert records[0]["format"] == "EDF+D" and len(records[0]["segments"]) == 2
    assert records[1]["units"]["Fp1"] == "mV" and records[1]["deid"]["age_years"] == 71.61
    assert records[2]["channels"]["missing"] == ["Fz", "Pz"]
    assert "bipolar" in records[4]["error"] and "annotation-only" in records[5]["error"]
    assert len(list((tmp_path / "plots").glob("page_*.png"))) == 4
    text = (tmp_path / "inspect.jsonl").read_text()
    for phi in ("Alice_Example", "Carl_Sample", "MRN00012345", "NK0001", "Tech_Bob", "1949", "1967"):
        assert phi not in text
