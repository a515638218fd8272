"""``clef embed --anonymous-ids``: hospital file names (MRN_date.edf, folders of patient
numbers) reach no table, search result, message or HTTP response; and annotation text is
scrubbed before ``clef inspect --plot`` draws it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from clef.synthetic.recordings import eeg_signals, make_edf

HEX16 = re.compile(r"^[0-9a-f]{16}$")
#: What a hospital's names carry: the patient's MRN and the session date.
NAMES = ("edf/MRN1234567/MRN1234567_20200301.edf", "edf/MRN1234567/MRN1234567_20210415.edf",
         "edf/MRN7654321/MRN7654321_20190909.edf")
PHI_BITS = ("MRN", "1234567", "7654321", "20200301", "20210415", "20190909")


#: The salt of the test session (conftest sets it for each test; a module fixture runs before).
SALT = "test-salt"


def _clef(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clef", *args], capture_output=True, text=True,
                          env={**os.environ, "CLEF_DEID_SALT": SALT}, timeout=600)


@pytest.fixture(scope="module")
def anon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three hospital sessions renamed as a hospital names them, plus a text file named
    like one, embedded with --anonymous-ids from the shell (conftest's hospital and model,
    or ``CLEF_TEST_HOSPITAL`` / ``CLEF_TEST_CHECKPOINT`` built once elsewhere)."""
    env_h, env_c = os.environ.get("CLEF_TEST_HOSPITAL"), os.environ.get("CLEF_TEST_CHECKPOINT")
    hospital = Path(env_h) if env_h else request.getfixturevalue("hospital")
    checkpoint = Path(env_c) if env_c else request.getfixturevalue("pipeline").checkpoint
    root = tmp_path_factory.mktemp("anon")
    archive, store = root / "archive", root / "store"
    sources = sorted((hospital / "edf").rglob("*.edf"))[:3]
    for src, name in zip(sources, NAMES):
        (archive / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, archive / name)
    (archive / "edf/MRN7654321/MRN7654321_notes.edf").write_text("Patient: Jane Doe MRN 7654321\n")
    r = _clef("embed", str(archive), "--checkpoint", str(checkpoint), "--store", str(store),
              "--anonymous-ids", "--json", "--no-progress")
    assert r.returncode == 0, r.stderr
    return {"archive": archive, "store": store, "checkpoint": checkpoint, "summary": json.loads(r.stdout),
            "stderr": r.stderr}


def _tables(store: Path) -> dict[str, pl.DataFrame]:
    from services.store import EmbeddingStore

    st = EmbeddingStore(store)
    return {"sessions": st.sessions(), "manifest": st.manifest(), "embeddings": st.embeddings(windows=False)}


def test_store_holds_salted_hashes_not_names(anon: dict) -> None:
    s = anon["summary"]
    assert (s["embedded"], s["failed"]) == (3, 1)
    t = _tables(anon["store"])
    ses, man = t["sessions"], t["manifest"]
    assert ses.height == 3 and all(HEX16.match(x) for x in ses["session_id"].to_list() + ses["path"].to_list())
    assert all(HEX16.match(x) for x in man["path"].to_list())
    for name, df in t.items():
        text = df.drop([c for c in ("vector", "window_vectors") if c in df.columns]).write_csv()
        assert not any(bit in text for bit in PHI_BITS), name
    store_json = (anon["store"] / "store.json").read_text()
    assert json.loads(store_json)["anonymous_ids"] is True and str(anon["archive"]) not in store_json
    assert not any(bit in anon["stderr"] for bit in PHI_BITS)  # nor in what the run printed
    failed = man.filter(pl.col("status") == "failed")
    assert failed["error_kind"].to_list() == ["not_edf"]


def test_the_installation_can_map_a_file_to_its_id(anon: dict) -> None:
    """Whoever holds the salt (CLEF_DEID_SALT) recomputes a file's ids; nobody else can."""
    from tokenizer.deid import anonymous_id

    ses = _tables(anon["store"])["sessions"]
    assert set(ses["path"]) == {anonymous_id(n, "path") for n in NAMES}
    assert set(ses["session_id"]) == {anonymous_id(Path(n).stem, "session") for n in NAMES}
    assert anonymous_id(NAMES[0], "path", salt="another-site") not in set(ses["path"])


def test_rerun_is_idempotent_and_a_store_is_never_mixed(anon: dict) -> None:
    from services.batch import embed_archive
    from services.config import EmbedConfig
    from services.store import StoreError

    again = embed_archive(anon["archive"], anon["checkpoint"], anon["store"], EmbedConfig(anonymous_ids=True),
                          progress=False)
    assert (again.embedded, again.unchanged, again.failed_skipped) == (0, 3, 1)
    with pytest.raises(StoreError, match="written with --anonymous-ids"):
        embed_archive(anon["archive"], anon["checkpoint"], anon["store"], EmbedConfig(), progress=False)
    r = _clef("embed", str(anon["archive"]), "--checkpoint", str(anon["checkpoint"]), "--store", str(anon["store"]),
              "--no-progress")
    assert r.returncode == 2 and "anonymous-ids" in r.stderr and "Traceback" not in r.stderr


def test_search_and_api_speak_in_hashes(anon: dict) -> None:
    from fastapi.testclient import TestClient

    from tokenizer.deid import anonymous_id
    from services.api import create_app
    from services.config import ServeConfig
    from services.search import CohortSearcher

    sid = anonymous_id(Path(NAMES[0]).stem, "session")
    found = CohortSearcher(anon["store"]).search_session(sid, k=5)
    assert len(found) == 2 and all(HEX16.match(n.session_id) and HEX16.match(n.path or "") for n in found)
    key = "anon-test-key-0123456789"
    app = create_app(ServeConfig(store=anon["store"], checkpoint=anon["checkpoint"]), [key])
    with TestClient(app) as c:
        got = c.get(f"/sessions/{sid}", headers={"X-API-Key": key})
        assert got.status_code == 200 and got.json()["session_id"] == sid
        sim = c.get(f"/sessions/{sid}/similar", params={"k": 5}, headers={"X-API-Key": key})
        assert sim.status_code == 200 and len(sim.json()["neighbours"]) == 2
        assert c.get(f"/sessions/{Path(NAMES[0]).stem}", headers={"X-API-Key": key}).status_code == 404
        assert not any(bit in got.text + sim.text for bit in PHI_BITS)


def test_annotation_text_is_scrubbed_before_it_is_drawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Technicians type names, MRNs and dates into annotations; the page shows placeholders."""
    import matplotlib.axes

    from clef.viz import plot_page
    from tokenizer import read_recording

    typed = [(1.0, None, "Patient: Jane Doe"), (2.0, None, "MRN 7654321 awake"), (3.0, None, "seen 03/01/2020"),
             (4.0, None, "called Dr. Smith"), (5.0, None, "eyes closed")]
    p = make_edf(tmp_path / "annotated.edf", eeg_signals(12, 256), annotations=typed)
    drawn: list[str] = []
    real_text = matplotlib.axes.Axes.text

    def spy(self, x, y, s, *a, **k):  # noqa: ANN001, ANN002, ANN003
        drawn.append(str(s))
        return real_text(self, x, y, s, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "text", spy)
    plot_page(read_recording(p), tmp_path / "page.png", start_s=0.0)
    joined = " ".join(drawn)
    assert "eyes closed" in joined and "[NAME]" in joined and "[ID]" in joined and "[DATE]" in joined
    assert not any(bit in joined for bit in ("Jane", "Doe", "7654321", "03/01/2020", "Smith"))
