"""The HTTP API keeps its OpenAPI contract (issue 17, item 10).

The schema at ``/openapi.json`` documents every status each endpoint returns, every error
body is the one :class:`services.api.errors.ErrorOut` model (FastAPI's own request-validation
errors included), and schemathesis (v4) finds no failure: its coverage, fuzzing and stateful
phases run in-process against the ASGI app (no socket), a bounded number of examples each,
with the settings a run against a deployment uses (``services/schemathesis.toml``) and real
EDF/BDF uploads (``services/schemathesis_hooks.py``).
"""

from __future__ import annotations

import collections
import logging
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmark_tasks.probes import LogisticProbe, TaskProbe, save_probe
from services.batch import embed_archive
from services.config import EmbedConfig, ServeConfig
from services.store import EmbeddingStore
from tests.factories import make_archive

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

log = logging.getLogger(__name__)

KEY = "openapi-key-0123456789abcdef"
MAX_UPLOAD_MB = 2.0
MAX_K = 20
MAX_EXAMPLES = 10  # per operation, in each phase (a run against a deployment keeps schemathesis's default)
CONFIG = Path(__file__).resolve().parents[1] / "services" / "schemathesis.toml"
UPLOADS = ("POST /embed", "POST /probabilities", "POST /similar")


@pytest.fixture(scope="module")
def served(svc_hospital: Path, svc_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The app (not started: schemathesis calls it in-process) on a store of 6 sessions and two probes."""
    from services.api import create_app

    root = tmp_path_factory.mktemp("openapi")
    archive = make_archive(svc_hospital, root / "archive", 6, bad=False, duplicate=False)
    embed_archive(archive, svc_checkpoint, root / "store", EmbedConfig(), progress=False)
    st = EmbeddingStore(root / "store")
    model = st.models()[0]
    ids, x = st.matrix(model)
    rng = np.random.default_rng(0)
    for task in ("epilepsy", "benzodiazepines"):
        save_probe(root / "results", TaskProbe(task, LogisticProbe(rng.normal(size=x.shape[1]), 0.1, x.mean(0),
                                                                   x.std(0) + 1e-3), model,
                                               {"category": "disease", "auroc": 0.7}))
    cfg = ServeConfig(store=root / "store", checkpoint=svc_checkpoint, probes=root / "results",
                      max_upload_mb=MAX_UPLOAD_MB, max_k=MAX_K, reload_seconds=0)
    return {"app": create_app(cfg, [KEY]), "ids": list(ids)}


@pytest.fixture(scope="module")
def spec(served: dict[str, Any]) -> dict[str, Any]:
    return served["app"].openapi()


@pytest.fixture()
def edf_uploads():
    """Positive test cases upload synthetic EDF/BDF recordings (undone afterwards)."""
    from services import schemathesis_hooks

    schemathesis_hooks.register()
    yield
    schemathesis_hooks.unregister()


def _config(phases: dict[str, Any]) -> Any:
    """The deployment settings (services/schemathesis.toml), bounded and seeded for the suite."""
    data = tomllib.loads(CONFIG.read_text())
    data["auth"] = {"openapi": {"ApiKey": {"api_key": KEY}}}  # instead of ${CLEF_API_KEY}
    data.update({"seed": 17, "workers": 1, "cache": {"enabled": False},  # no .schemathesis/ folder
                 "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"]})
    data["generation"] = {**data.get("generation", {}), "max-examples": MAX_EXAMPLES}
    data["phases"] = {**data.get("phases", {}), **phases}
    return schemathesis.Config.from_dict(data)


def _schema(app: Any, phases: dict[str, Any]) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=_config(phases))


@dataclass
class _Run:
    """What one schemathesis engine run did."""

    cases: collections.Counter = field(default_factory=collections.Counter)  # phase -> test cases
    statuses: collections.Counter = field(default_factory=collections.Counter)  # (phase, operation, status) -> n
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    phases: dict[str, str] = field(default_factory=dict)  # phase -> its final status
    seconds: float = 0.0


def _run_engine(schema: Any) -> _Run:
    """Run every enabled phase as ``schemathesis run`` would, and gather the outcome."""
    from schemathesis.engine import events, from_schema

    out, t0 = _Run(), time.perf_counter()
    for ev in from_schema(schema).execute():
        if isinstance(ev, events.ScenarioFinished):
            rec = ev.recorder
            out.cases[ev.phase.value] += len(rec.cases)
            for case_id, interaction in rec.interactions.items():
                if interaction.response is not None and case_id in rec.cases:
                    label = rec.cases[case_id].value.operation.label
                    out.statuses[(ev.phase.value, label, interaction.response.status_code)] += 1
            for case_id, checks in rec.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        resp = rec.interactions.get(case_id)
                        body = resp.response.content[:300] if resp is not None and resp.response is not None else b""
                        out.failures.append(f"{ev.phase.value} {rec.label}: {check.name}: "
                                            f"{check.failure_info.failure.title} ({body!r})")
        elif isinstance(ev, events.NonFatalError):
            out.errors.append(f"{ev.phase} {ev.label}: {ev.value!r}")
        elif isinstance(ev, events.FatalError):
            out.errors.append(f"fatal: {ev.exception!r}")
        elif isinstance(ev, events.PhaseFinished):
            out.phases[ev.phase.name.value] = str(ev.status)
        elif isinstance(ev, events.EngineFinished):
            out.failures += [f"after run: {f.title}" for f in ev.failures]
    out.seconds = time.perf_counter() - t0
    return out


# -- the schema itself -------------------------------------------------------------------------
def test_every_error_status_is_documented_with_the_one_error_model(spec: dict[str, Any]) -> None:
    ops = {f"{m.upper()} {p}": op for p, item in spec["paths"].items() for m, op in item.items()}
    expected = {
        "GET /health": {"200", "500"},
        "GET /tasks": {"200", "401", "403", "500"},
        "GET /sessions/{session_id}": {"200", "401", "403", "404", "422", "500"},
        "GET /sessions/{session_id}/probabilities": {"200", "401", "403", "404", "422", "500"},
        "GET /sessions/{session_id}/similar": {"200", "401", "403", "404", "422", "500"},
        "GET /sessions/{session_id}/explain": {"200", "401", "403", "404", "409", "422", "500"},
        "POST /embed": {"200", "400", "401", "403", "411", "413", "422", "500"},
        "POST /probabilities": {"200", "400", "401", "403", "404", "411", "413", "422", "500"},
        "POST /similar": {"200", "400", "401", "403", "411", "413", "422", "500"},
        "POST /search/text": {"200", "400", "401", "403", "409", "411", "413", "422", "500"},
        "GET /sessions": {"200", "401", "403", "422", "500"},
        "GET /cohort.csv": {"200", "401", "403", "422", "500"},
        "GET /cohort.parquet": {"200", "401", "403", "422", "500"},
        "GET /sessions/{session_id}/spectrogram.png": {"200", "401", "403", "404", "422", "500"},
        "GET /sessions/{session_id}/eeg": {"200", "401", "403", "404", "422", "500"},
        "GET /sessions/{session_id}/findings": {"200", "401", "403", "404", "422", "500"},
    }
    assert {k: set(op["responses"]) for k, op in ops.items()} == expected
    for name, op in ops.items():
        for status, resp in op["responses"].items():
            if status != "200":
                assert resp["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}, \
                    (name, status)
        if name != "GET /health":
            assert op["security"] == [{"ApiKey": []}, {"Bearer": []}], name
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas  # FastAPI's default is gone
    assert schemas["ErrorOut"]["required"] == ["detail", "kind"]
    assert schemas["ErrorOut"]["properties"]["detail"]["type"] == "string"
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key of the service."}
    k = next(p for p in ops["POST /similar"]["parameters"] if p["name"] == "k")
    assert (k["schema"]["minimum"], k["schema"]["maximum"]) == (1, MAX_K)
    assert ops["POST /embed"]["requestBody"]["content"]["multipart/form-data"]["encoding"] == {
        "file": {"contentType": "application/octet-stream"}}
    links = ops["POST /similar"]["responses"]["200"]["links"]
    assert links["FirstNeighbour"]["parameters"] == {"session_id": "$response.body#/neighbours/0/session_id"}


# -- the error bodies the app really sends -----------------------------------------------------
def test_every_error_path_answers_the_error_model(served: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    from services.api.errors import ErrorOut
    from services.schemathesis_hooks import edf_bytes

    sid, edf = served["ids"][0], edf_bytes(10, 128)
    with TestClient(served["app"], raise_server_exceptions=False) as anon:
        c = TestClient(served["app"], headers={"X-API-Key": KEY})

        def error(r: Any, status: int, kind: str) -> ErrorOut:
            assert r.status_code == status, (r.status_code, r.text)
            assert r.headers["content-type"] == "application/json"
            body = ErrorOut.model_validate(r.json())  # extra="forbid": exactly the model's fields
            assert body.kind == kind and body.detail, body
            return body

        e = error(anon.get("/tasks"), 401, "unauthorized")
        assert "X-API-Key" in e.detail and anon.get("/tasks").headers["www-authenticate"] == "ApiKey"
        error(anon.get("/tasks", headers={"X-API-Key": "wrong-key-0123456789abcdef"}), 403, "forbidden")
        # a wrong key is refused even next to a right one
        error(anon.get("/tasks", headers={"X-API-Key": KEY, "Authorization": "Bearer wrong-0123456789abcdef"}),
              403, "forbidden")
        assert anon.get("/tasks", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        error(c.get("/sessions/no-such-session"), 404, "unknown_session")
        error(c.get("/sessions/no-such-session/similar"), 404, "unknown_session")
        error(c.get(f"/sessions/{sid}/probabilities", params={"task": "nope"}), 404, "unknown_task")
        error(c.post("/probabilities", files={"file": ("x.edf", edf)}, params={"task": "nope"}), 404, "unknown_task")
        error(c.get("/no/such/route"), 404, "not_found")
        r = c.delete("/embed")
        error(r, 405, "method_not_allowed")
        assert r.headers["allow"] == "POST"
        # FastAPI's own validation: the same model, one entry per invalid field, the value not echoed
        e = error(c.get(f"/sessions/{sid}/similar", params={"k": MAX_K + 1, "per_patient": "Jane Doe"}), 422,
                  "invalid_request")
        assert sorted(tuple(x.loc) for x in e.errors) == [("query", "k"), ("query", "per_patient")]
        assert {x.type for x in e.errors} == {"less_than_equal", "bool_parsing"} and "Jane" not in e.model_dump_json()
        e = error(c.post("/embed"), 422, "invalid_request")
        assert [x.loc for x in e.errors] == [["body", "file"]] and e.errors[0].type == "missing"
        e = error(c.get(f"/sessions/{sid}/similar", params={"filter": "age=old"}), 422, "invalid_request")
        assert [x.loc for x in e.errors] == [["query", "filter"]] and "age" in e.detail
        # uploads: not an EDF, cut short, too large, no Content-Length, a bad Content-Length
        e = error(c.post("/embed", files={"file": ("x.edf", b"Patient: Jane Doe")}), 422, "not_edf")
        assert e.errors == [] and "Jane" not in e.detail
        cut = c.post("/similar", files={"file": ("x.edf", edf[:300])})
        assert cut.status_code == 422
        assert ErrorOut.model_validate(cut.json()).kind in ("truncated", "corrupt_header")
        assert cut.json()["detail"].startswith(cut.json()["kind"] + ":")
        error(c.post("/embed", files={"file": ("x.edf", b"0       " + b"\0" * int((MAX_UPLOAD_MB + 1) * 2**20))}),
              413, "payload_too_large")
        error(c.post("/embed", content=iter([b"x"]), headers={"content-type": "multipart/form-data; boundary=b"}),
              411, "length_required")
        error(c.post("/embed", content=b"x", headers={"content-length": "one"}), 400, "bad_request")
        assert c.post("/embed", files={"file": ("x.edf", edf)}).status_code == 200
        # a bug anywhere: 500, the same model, nothing of the exception in the body
        monkeypatch.setattr(served["app"].state.clef, "current", lambda: 1 / 0)
        e = error(anon.get(f"/sessions/{sid}", headers={"X-API-Key": KEY}), 500, "internal_error")
        assert "division" not in e.detail


# -- schemathesis ------------------------------------------------------------------------------
def test_schemathesis_coverage_fuzzing_and_stateful_find_no_failure(served: dict[str, Any], edf_uploads) -> None:
    schema = _schema(served["app"], {"coverage": {"enabled": True}, "fuzzing": {"enabled": True},
                                     "stateful": {"enabled": True, "max-steps": 4}})
    run = _run_engine(schema)
    log.info("schemathesis: %s test cases (%d in all) in %.1f s; %d failures, %d errors", dict(run.cases),
             sum(run.cases.values()), run.seconds, len(run.failures), len(run.errors))
    assert run.errors == []
    assert run.failures == [], "\n".join(run.failures[:20])
    assert {p: run.phases[p] for p in ("coverage", "fuzzing", "stateful")} == dict.fromkeys(
        ("coverage", "fuzzing", "stateful"), "success")
    assert run.cases["coverage"] > 50 and run.cases["fuzzing"] > 50 and run.cases["stateful"] > 20, run.cases
    ok = collections.Counter(op for (_, op, status), n in run.statuses.items() if status == 200 for _ in range(n))
    # the uploads were real recordings (embedded, 200) and the stateful phase followed the links to stored sessions
    assert all(ok[op] > 0 for op in UPLOADS), ok
    assert sum(n for (phase, op, status), n in run.statuses.items()
               if phase == "stateful" and op.startswith("GET /sessions/") and status == 200) > 0
    seen = {status for (_, _, status) in run.statuses}
    assert {200, 401, 404, 405, 422} <= seen, seen  # error paths were exercised, not only the happy one


def test_schemathesis_state_machine(served: dict[str, Any], edf_uploads) -> None:
    """The stateful API of the Python package (schema.as_state_machine) over the same links."""
    from hypothesis import HealthCheck, settings

    schema = _schema(served["app"], {"stateful": {"enabled": True}})
    machine = schema.as_state_machine()
    calls: collections.Counter = collections.Counter()

    class Workflow(machine):  # type: ignore[misc,valid-type]
        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            calls[(case.operation.label, response.status_code)] += 1
            super().validate_response(response, case, **kwargs)

    Workflow.run(settings=settings(max_examples=10, stateful_step_count=5, deadline=None, derandomize=True,
                                   database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.filter_too_much]))
    assert calls[("POST /similar", 200)] > 0, calls
    assert sum(n for (op, status), n in calls.items() if op.startswith("GET /sessions/") and status == 200) > 0, calls
