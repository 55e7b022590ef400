"""The ONTAP client against scripted REST exchanges, and the driver's plans and waits."""

from __future__ import annotations

import json
import re

import pytest
import responses

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ontap import (
    OntapClient,
    OntapError,
    Refusal,
    SnapmirrorDriver,
    normalise,
    parse_duration,
)

BASE = "https://ontap.test:443"
REL_URL = f"{BASE}/api/snapmirror/relationships"
UUID = "11111111-2222-3333-4444-555555555555"
JOB = {"job": {"uuid": "job-1", "_links": {"self": {"href": "/api/cluster/jobs/job-1"}}}}


def client() -> OntapClient:
    return OntapClient("ontap.test", "admin", "secret", timeout=5)


def record(dst: str = "svm_dc2:v1", state: str = "snapmirrored", **extra: object) -> dict:
    rec = {
        "uuid": extra.pop("uuid", UUID),
        "source": {"path": dst.replace("dc2", "dc1")},
        "destination": {"path": dst},
        "state": state,
        "healthy": True,
        "lag_time": "PT0H0M3S",
        "transfer": {"uuid": "t-0", "state": "success", "bytes_transferred": 0},
    }
    rec.update(extra)
    return rec


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT8H35M42S", 8 * 3600 + 35 * 60 + 42),
        ("P1DT2H", 93600),
        ("PT0.5S", 0),
        ("PT90S", 90),
        (None, None),
        ("", None),
        ("garbage", None),
    ],
)
def test_parse_duration(text: str | None, seconds: int | None) -> None:
    assert parse_duration(text) == seconds


def test_normalise_flattens_reasons_and_lag() -> None:
    rec = record(healthy=False, unhealthy_reason=[{"code": "13303844", "message": "Transfer failed."}])
    out = normalise(rec)
    assert out["unhealthy_reasons"] == ["Transfer failed."]
    assert out["lag_seconds"] == 3 and out["transfer_state"] == "success" and out["destination"] == "svm_dc2:v1"


@responses.activate
def test_relationships_asks_for_fields_and_source_side() -> None:
    responses.get(REL_URL, json={"records": [record()], "num_records": 1})
    rels = client().relationships(source_side=True)
    assert rels[0]["uuid"] == UUID
    query = responses.calls[0].request.url
    assert "list_destinations_only=true" in query and "fields=uuid%2Csource.path" in query
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")


@responses.activate
def test_set_state_sends_only_the_state_and_returns_the_job() -> None:
    responses.patch(f"{REL_URL}/{UUID}", json=JOB, status=202)
    assert client().set_state(UUID, "paused") == "job-1"
    assert json.loads(responses.calls[0].request.body) == {"state": "paused"}
    assert len(responses.calls) == 1  # the library was not left to poll the job


@responses.activate
def test_break_with_force_uses_the_query_flag() -> None:
    responses.patch(f"{REL_URL}/{UUID}", json=JOB, status=202)
    client().set_state(UUID, "broken_off", force=True)
    assert "force=true" in responses.calls[0].request.url


@responses.activate
def test_reverse_swaps_paths() -> None:
    responses.patch(f"{REL_URL}/{UUID}", json=JOB, status=202)
    client().reverse(UUID, "svm_dc2:v1", "svm_dc1:v1")
    assert json.loads(responses.calls[0].request.body) == {
        "source": {"path": "svm_dc2:v1"},
        "destination": {"path": "svm_dc1:v1"},
        "state": "snapmirrored",
    }


@responses.activate
def test_start_transfer_reads_the_location() -> None:
    responses.post(
        f"{REL_URL}/{UUID}/transfers",
        json=JOB,
        status=202,
        headers={"Location": f"/api/snapmirror/relationships/{UUID}/transfers/t-9"},
    )
    assert client().start_transfer(UUID) == ("t-9", "job-1")


@responses.activate
def test_jobs_are_read_in_one_call() -> None:
    responses.get(
        f"{BASE}/api/cluster/jobs",
        json={
            "records": [
                {"uuid": "a", "state": "success"},
                {"uuid": "b", "state": "failure", "message": "no", "code": 1},
            ]
        },
    )
    jobs = client().jobs(["a", "b"])
    assert jobs["b"]["state"] == "failure" and len(responses.calls) == 1
    assert "uuid=a%7Cb" in responses.calls[0].request.url


@responses.activate
@pytest.mark.parametrize(
    ("status", "body", "expect"),
    [
        (401, {"error": {"message": "not authorized for that command", "code": "6"}}, "refused the credentials"),
        (404, {"error": {"message": "entry doesn't exist", "code": "4", "target": "uuid"}}, "code 4"),
        (400, {"error": {"message": "Cannot change state", "code": "13303818"}}, "Cannot change state"),
    ],
)
def test_errors_name_the_cluster(status: int, body: dict, expect: str) -> None:
    responses.patch(f"{REL_URL}/{UUID}", json=body, status=status)
    with pytest.raises(OntapError) as err:
        client().set_state(UUID, "paused")
    assert expect in err.value.message and "ontap.test:443" in err.value.message
    assert err.value.status == status


def test_unreachable_cluster_is_named() -> None:
    c = OntapClient("127.0.0.1", "admin", "secret", port=1, timeout=1)
    with pytest.raises(OntapError, match=re.escape("ONTAP cluster 127.0.0.1:1 is unreachable")):
        c.relationships()


def test_a_ca_path_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent.pem")
    conn = OntapClient("h", "u", "p", ca_path="/lab/ca.pem").connection()
    assert conn.session.trust_env is False and conn.session.verify == "/lab/ca.pem"
    assert OntapClient("h", "u", "p", validate_certs=False).connection().session.verify is False


# ------------------------------------------------------------------ plans (no HTTP)
def rel(state: str = "snapmirrored", transfer: str = "success", healthy: bool = True, lag: int = 5) -> dict:
    return {
        "uuid": UUID,
        "source": "svm_dc1:v1",
        "destination": "svm_dc2:v1",
        "state": state,
        "healthy": healthy,
        "unhealthy_reasons": [] if healthy else ["Injected."],
        "lag_seconds": lag,
        "transfer_state": transfer,
        "transfer_uuid": "t-0",
        "transfer_bytes": 0,
    }


PLANS = [
    # target, state, transfer, options, expected steps (or the refusal's text)
    ("paused", "snapmirrored", "success", {}, ["quiesce"]),
    ("paused", "paused", "success", {}, []),
    ("paused", "snapmirrored", "transferring", {}, ["wait_transfer", "quiesce"]),
    ("paused", "snapmirrored", "transferring", {"transfer_running": "abort"}, ["abort", "quiesce"]),
    ("paused", "snapmirrored", "transferring", {"transfer_running": "fail"}, "transfer is running"),
    ("paused", "broken_off", "success", {}, "only a snapmirrored"),
    ("broken_off", "snapmirrored", "success", {}, ["quiesce", "break"]),
    ("broken_off", "paused", "success", {}, ["break"]),
    ("broken_off", "broken_off", "success", {}, []),
    ("broken_off", "uninitialized", None, {}, "uninitialized"),
    ("snapmirrored", "uninitialized", None, {}, ["initialize"]),
    ("snapmirrored", "paused", "success", {}, ["resume"]),
    ("snapmirrored", "broken_off", "success", {}, ["resync"]),
    ("snapmirrored", "snapmirrored", "success", {}, []),
    ("snapmirrored", "snapmirrored", "transferring", {}, ["wait_transfer"]),
    ("updated", "snapmirrored", "success", {}, ["update"]),
    ("updated", "snapmirrored", "transferring", {}, ["wait_transfer", "update"]),
    ("updated", "snapmirrored", "success", {"update_max_lag": 10}, []),
    ("updated", "snapmirrored", "success", {"update_max_lag": 2}, ["update"]),
    ("updated", "paused", "success", {}, "only a snapmirrored"),
    ("reversed", "broken_off", "success", {}, ["reverse"]),
    ("reversed", "snapmirrored", "success", {}, "break it first"),
    ("reversed", "snapmirrored", "success", {"force": True}, ["reverse"]),
]


@pytest.mark.parametrize(("target", "state", "transfer", "options", "expected"), PLANS)
def test_plan(target: str, state: str, transfer: str | None, options: dict, expected: list | str) -> None:
    driver = SnapmirrorDriver(None, target, **options)  # type: ignore[arg-type]
    if isinstance(expected, str):
        with pytest.raises(Refusal, match=expected):
            driver.plan(rel(state, transfer), None)
    else:
        assert driver.plan(rel(state, transfer), None).steps == expected


@pytest.mark.parametrize("target", ["updated", "snapmirrored", "reversed"])
def test_unhealthy_needs_force(target: str) -> None:
    state = {"updated": "snapmirrored", "snapmirrored": "paused", "reversed": "broken_off"}[target]
    with pytest.raises(Refusal, match="unhealthy .Injected"):
        SnapmirrorDriver(None, target).plan(rel(state, healthy=False), None)  # type: ignore[arg-type]
    assert SnapmirrorDriver(None, target, force=True).plan(rel(state, healthy=False), None).steps  # type: ignore[arg-type]


def test_break_of_unhealthy_is_allowed() -> None:
    # A disaster break: the source is gone, the relationship is unhealthy, the break must go.
    assert SnapmirrorDriver(None, "broken_off").plan(rel("snapmirrored", healthy=False), None).steps == [  # type: ignore[arg-type]
        "quiesce",
        "break",
    ]


def test_already_reversed_is_a_no_op() -> None:
    rev = dict(rel(), source="svm_dc2:v1", destination="svm_dc1:v1")
    assert SnapmirrorDriver(None, "reversed").plan(None, rev).steps == []  # type: ignore[arg-type]


# ------------------------------------------------------------------ waits, with a scripted cluster
class ScriptedCluster:
    """Answers the driver like a cluster whose state lands ``lands_after`` polls after a PATCH."""

    def __init__(self, n: int, lands_after: int = 2, fail_job: set | None = None) -> None:
        self.rels = {f"u{i}": dict(rel(), uuid=f"u{i}", destination=f"svm_dc2:v{i}") for i in range(n)}
        self.lands_after = lands_after
        self.pending: dict[str, tuple[str, int]] = {}
        self.fail_job = fail_job or set()
        self.calls: list[tuple] = []
        self.hostname = "scripted"

    def cluster(self) -> dict:
        return {"name": "scripted"}

    def svm_names(self) -> list[str]:
        return ["svm_dc2"]

    def relationships(self, source_side: bool = False) -> list[dict]:
        self.calls.append(("list", source_side))
        if source_side:
            return []
        for uuid, (state, left) in list(self.pending.items()):
            if left <= 1:
                self.rels[uuid]["state"] = state
                del self.pending[uuid]
            else:
                self.pending[uuid] = (state, left - 1)
        return [dict(r) for r in self.rels.values()]

    def jobs(self, uuids: list[str]) -> dict:
        self.calls.append(("jobs", len(uuids)))
        return {
            u: {
                "uuid": u,
                "state": "failure" if u.split(":")[1] in self.fail_job else "success",
                "message": "Injected.",
            }
            for u in uuids
        }

    def set_state(self, uuid: str, state: str, force: bool = False) -> str:
        self.calls.append(("patch", uuid, state))
        if uuid not in self.fail_job:
            self.pending[uuid] = (state, self.lands_after)
        return f"job:{uuid}"

    def map(self, fn, items):
        return [(i, fn(i), None) for i in items]

    def close(self) -> None:
        pass


def test_many_relationships_are_polled_together() -> None:
    cluster = ScriptedCluster(50)
    driver = SnapmirrorDriver(cluster, "broken_off")  # type: ignore[arg-type]
    works = driver.select(None, "svm_dc2", "*")
    driver.run(works)
    assert all(w.error is None and w.rel["state"] == "broken_off" for w in works)
    lists = [c for c in cluster.calls if c[0] == "list"]
    # Two steps, each landing after two polls: a handful of listings for all 50 at once.
    assert len(lists) <= 8
    assert sum(1 for c in cluster.calls if c[0] == "patch") == 100


def test_a_failed_job_stops_only_its_relationship() -> None:
    cluster = ScriptedCluster(3, fail_job={"u1"})
    driver = SnapmirrorDriver(cluster, "paused")  # type: ignore[arg-type]
    works = driver.select(None, "svm_dc2", "*")
    driver.run(works)
    errors = {w.rel["uuid"]: w.error for w in works}
    assert errors["u0"] is None and errors["u2"] is None
    assert "quiesce job failed: Injected." in (errors["u1"] or "")


def test_the_deadline_is_kept() -> None:
    cluster = ScriptedCluster(1, lands_after=10**6)
    driver = SnapmirrorDriver(cluster, "paused", timeout=0.3)  # type: ignore[arg-type]
    works = driver.select(None, "svm_dc2", "*")
    took = driver.run(works)
    assert took < 2.0
    assert "timed out after 0.3 s waiting for step quiesce (state snapmirrored" in (works[0].error or "")


def test_selection_refuses_unknown_and_foreign_paths() -> None:
    driver = SnapmirrorDriver(ScriptedCluster(1), "paused")  # type: ignore[arg-type]
    with pytest.raises(OntapError, match="svm_dc2:nope: no SnapMirror relationship"):
        driver.select(["svm_dc2:v0", "svm_dc2:nope"], None, None)
    with pytest.raises(OntapError, match="not on cluster scripted"):
        driver.select(["svm_dc1:v0"], None, None)
    with pytest.raises(OntapError, match="matching 'zz\\*'"):
        driver.select(None, "svm_dc2", "zz*")
