"""snapmirror and snapmirror_info against scripted ONTAP REST exchanges (``responses``).

The scripted cluster lands a state one listing after the PATCH that asked for it, like
ONTAP (a job that succeeds does not mean the state is there yet).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ontap import (
    OntapError,
)
from ansible_collections.mailops.zimbra_geo.plugins.modules import (
    snapmirror,
    snapmirror_info,
)

BASE = "https://ontap.test:443"
DSTS = ["svm_dc2:mbox1_db", "svm_dc2:mbox1_index"]


class Cluster:
    """A scripted destination cluster: records every call, lands states one listing late."""

    def __init__(self, state: str = "snapmirrored", lag: str = "PT0H0M7S") -> None:
        self.rels = {
            f"u{i}": {
                "uuid": f"u{i}",
                "source": {"path": d.replace("dc2", "dc1")},
                "destination": {"path": d},
                "state": state,
                "healthy": True,
                "lag_time": lag,
                "transfer": {"uuid": "t0", "state": "success", "bytes_transferred": 0},
            }
            for i, d in enumerate(DSTS)
        }
        self.landing: dict[str, dict] = {}
        self.changes: list[tuple[str, str, Any]] = []

    def install(self, rsps: responses.RequestsMock) -> None:
        rsps.get(f"{BASE}/api/cluster", json={"name": "dc2-ontap", "version": {"full": "9.14.1"}})
        rsps.get(f"{BASE}/api/svm/svms", json={"records": [{"name": "svm_dc2", "uuid": "s"}], "num_records": 1})
        rsps.add_callback("GET", f"{BASE}/api/snapmirror/relationships", callback=self.list)
        rsps.add_callback("GET", f"{BASE}/api/cluster/jobs", callback=self.jobs)
        for uuid in self.rels:
            rsps.add_callback("PATCH", f"{BASE}/api/snapmirror/relationships/{uuid}", callback=self.patch)
            rsps.add_callback("POST", f"{BASE}/api/snapmirror/relationships/{uuid}/transfers", callback=self.post)

    def list(self, request: Any) -> tuple[int, dict, str]:
        if "list_destinations_only=true" in request.url:
            return 200, {}, json.dumps({"records": [], "num_records": 0})
        for uuid, change in self.landing.items():
            self.rels[uuid].update(change)
        self.landing = {}
        return 200, {}, json.dumps({"records": list(self.rels.values()), "num_records": len(self.rels)})

    def jobs(self, request: Any) -> tuple[int, dict, str]:
        return 200, {}, json.dumps({"records": [], "num_records": 0})

    def patch(self, request: Any) -> tuple[int, dict, str]:
        uuid = request.url.rsplit("/", 1)[1].split("?")[0]
        body = json.loads(request.body)
        self.changes.append(("PATCH", uuid, body))
        self.landing[uuid] = {"state": body["state"]}
        job = {"uuid": f"j-{uuid}", "_links": {"self": {"href": f"/api/cluster/jobs/j-{uuid}"}}}
        return 202, {}, json.dumps({"job": job})

    def post(self, request: Any) -> tuple[int, dict, str]:
        uuid = request.url.split("/relationships/")[1].split("/")[0]
        self.changes.append(("POST", uuid, None))
        self.landing[uuid] = {"transfer": {"uuid": f"t-{uuid}", "state": "success", "bytes_transferred": 42}}
        return (
            202,
            {"Location": f"/api/snapmirror/relationships/{uuid}/transfers/t-{uuid}"},
            json.dumps({"job": {"uuid": f"j-{uuid}", "_links": {"self": {"href": f"/api/cluster/jobs/j-{uuid}"}}}}),
        )


def params(**kw: Any) -> dict:
    p = {
        "hostname": "ontap.test",
        "port": 443,
        "username": "admin",
        "password": "secret",
        "validate_certs": True,
        "ca_path": None,
        "timeout": 5.0,
        "state": "broken_off",
        "relationships": None,
        "svm": "svm_dc2",
        "volume_pattern": "*",
        "transfer_running": "wait",
        "force": False,
        "update_max_lag": 0,
        "wait_timeout": 10.0,
        "max_workers": 4,
    }
    p.update(kw)
    return p


def run(cluster: Cluster, check: bool = False, diff: bool = True, **kw: Any) -> dict:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        cluster.install(rsps)
        result = snapmirror.SnapmirrorRunner(params(**kw), check, diff).run()
        methods = {c.request.method for c in rsps.calls}
    result["_methods"] = methods
    return result


def test_check_mode_predicts_and_sends_no_change() -> None:
    cluster = Cluster()
    res = run(cluster, check=True)
    assert res["changed"] is True
    assert res["_methods"] == {"GET"} and cluster.changes == []
    assert [r["actions"] for r in res["relationships"]] == [["quiesce", "break"]] * 2
    assert res["diff"] == {"before": dict.fromkeys(DSTS, "snapmirrored"), "after": dict.fromkeys(DSTS, "broken_off")}


def test_break_quiesces_first_and_reports_the_lag() -> None:
    cluster = Cluster()
    res = run(cluster)
    assert res["changed"] is True and "msg" not in res
    assert [c[2] for c in cluster.changes] == [{"state": "paused"}] * 2 + [{"state": "broken_off"}] * 2
    for r in res["relationships"]:
        assert r["state_after"] == "broken_off" and r["lag_at_break_seconds"] == 7
    assert res["diff"]["after"] == dict.fromkeys(DSTS, "broken_off")


def test_second_run_changes_nothing() -> None:
    cluster = Cluster(state="broken_off")
    res = run(cluster)
    assert res["changed"] is False and cluster.changes == []
    assert all(r["actions"] == [] for r in res["relationships"])


def test_no_diff_unless_asked() -> None:
    assert "diff" not in run(Cluster(state="broken_off"), diff=False)


def test_update_runs_a_transfer_and_counts_bytes() -> None:
    cluster = Cluster()
    res = run(cluster, state="updated")
    assert [c[0] for c in cluster.changes] == ["POST", "POST"]
    assert res["changed"] is True and all(r["bytes_transferred"] == 42 for r in res["relationships"])


def test_update_within_max_lag_makes_no_call() -> None:
    cluster = Cluster(lag="PT0H0M7S")
    res = run(cluster, state="updated", update_max_lag=60)
    assert res["changed"] is False and cluster.changes == []


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"relationships": ["svm_dc2:nope"], "svm": None}, "svm_dc2:nope: no SnapMirror relationship"),
        ({"relationships": ["svm_dc1:mbox1_db"], "svm": None}, "is not on cluster dc2-ontap"),
        ({"state": "reversed"}, "break it first"),
        ({"state": "paused", "wait_timeout": 0}, "wait_timeout must be positive"),
    ],
)
def test_refusals_come_before_any_change(kw: dict, message: str) -> None:
    cluster = Cluster()
    with pytest.raises(OntapError, match=message):
        run(cluster, **kw)
    assert cluster.changes == []


def test_main_rejects_both_selectors(capsys: pytest.CaptureFixture) -> None:
    args = {"hostname": "h", "password": "p", "state": "paused", "svm": "s", "relationships": ["s:v"]}
    with patch_module_args(args), pytest.raises(SystemExit):
        snapmirror.main()
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] and "mutually exclusive" in out["msg"]
    assert "p" not in json.dumps(out.get("invocation", {}).get("module_args", {}).get("password", ""))


# ------------------------------------------------------------------ snapmirror_info
def info_params(**kw: Any) -> dict:
    p = {
        "hostname": "ontap.test",
        "port": 443,
        "username": "admin",
        "password": "secret",
        "validate_certs": True,
        "ca_path": None,
        "timeout": 5.0,
        "svm": None,
        "relationships": None,
        "max_lag": None,
        "fail_on_lag": True,
        "require_healthy": False,
        "source_side": False,
    }
    p.update(kw)
    return p


@responses.activate
def test_info_reports_lag_health_and_rpo() -> None:
    responses.get(f"{BASE}/api/cluster", json={"name": "dc2-ontap"})
    responses.get(
        f"{BASE}/api/snapmirror/relationships",
        json={
            "num_records": 3,
            "records": [
                {
                    "uuid": "a",
                    "source": {"path": "svm_dc1:a"},
                    "destination": {"path": "svm_dc2:a"},
                    "state": "snapmirrored",
                    "healthy": True,
                    "lag_time": "PT5M",
                    "transfer": {"state": "success"},
                },
                {
                    "uuid": "b",
                    "source": {"path": "svm_dc1:b"},
                    "destination": {"path": "svm_dc2:b"},
                    "state": "snapmirrored",
                    "healthy": False,
                    "unhealthy_reason": [{"code": "13303844", "message": "Transfer failed."}],
                    "lag_time": "P1DT1S",
                    "transfer": {"state": "failed"},
                },
                {
                    "uuid": "c",
                    "source": {"path": "svm_dc1:c"},
                    "destination": {"path": "svm_dc2:c"},
                    "state": "uninitialized",
                    "healthy": True,
                },
            ],
        },
    )
    result, problem = snapmirror_info.run(info_params(max_lag=600, require_healthy=True))
    assert [r["lag_seconds"] for r in result["relationships"]] == [300, 86401, None]
    assert result["lagging"] == ["svm_dc2:b", "svm_dc2:c"] and result["unhealthy"] == ["svm_dc2:b"]
    assert result["summary"]["by_state"] == {"snapmirrored": 2, "uninitialized": 1}
    assert result["summary"]["max_lag_seconds"] == 86401
    assert problem and "lag more than 600 s" in problem and "svm_dc2:b (Transfer failed.)" in problem
    quiet, none = snapmirror_info.run(info_params(max_lag=600, fail_on_lag=False))
    assert none is None and quiet["lagging"] == ["svm_dc2:b", "svm_dc2:c"]
    with pytest.raises(OntapError, match="svm_dc2:zz"):
        snapmirror_info.run(info_params(relationships=["svm_dc2:zz"]))
    assert {c.request.method for c in responses.calls} == {"GET"}
