"""scality_ring_info end to end in-process, against scripted Supervisor and sproxyd exchanges.

The Supervisor answers are shaped as the vendor's API (``_items``/``_meta``, states as the
monitoring packs read them); each sproxyd is a small scripted object store so the canary's
bytes and metadata really travel through the module's HTTP calls.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import requests
import responses
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mailops.zimbra_geo.plugins.modules import scality_ring_info

SUP = "https://supervisor.test"
API = f"{SUP}/api/v0.1"
SPX = {"dc1": "http://sproxyd.dc1.test:81/proxy/chord", "dc2": "http://sproxyd.dc2.test:81/proxy/chord"}
PASSWORD = "s3cret-Supervisor"


def _servers() -> list:
    out = []
    for site, n in (("dc1", 1), ("dc2", 2)):
        for i in (1, 2, 3):
            out.append(
                {
                    "id": f"{site}-store{i}",
                    "name": f"{site}-store{i}",
                    "zone": site,
                    "management_ip_address": f"10.0.{n}.{i}",
                    "state": ["ONLINE"],
                    "status": "OK",
                }
            )
    return out


def _nodes(servers: list) -> list:
    return [
        {
            "id": f"{s['management_ip_address']}:8084",
            "name": s["name"].replace("store", "node"),
            "ring": "DATA",
            "admin_address": s["management_ip_address"],
            "admin_port": 8084,
            "state": "RUN",
            "reachable": True,
            "conf_mismatch": False,
            "tasks_blocked": False,
        }
        for s in servers
    ]


def _disks(servers: list) -> list:
    return [
        {
            "id": f"{s['id']}-disk{j}",
            "name": f"disk{j}",
            "server": s["id"],
            "host": s["management_ip_address"],
            "state": ["OK"],
        }
        for s in servers
        for j in (1, 2)
    ]


HEALTHY = {
    "status": {"supv2_status": "Running", "bizstoresup_status": "Running"},
    "ring": {"name": "DATA", "status": "OK", "state": ["RUN"], "diskspace_total": 1000, "diskspace_used": 100},
    "servers": _servers(),
    "tasks": [],
}


def supervisor(state: dict | None = None, down: bool = False) -> None:
    """Script the Supervisor; ``down`` refuses every connection."""
    if down:
        responses.add(
            responses.GET, re.compile(re.escape(API) + ".*"), body=requests.exceptions.ConnectionError("refused")
        )
        return
    st = copy.deepcopy(state or HEALTHY)
    nodes = st.get("nodes", _nodes(st["servers"]))
    disks = st.get("disks", _disks(st["servers"]))
    responses.get(f"{API}/status/", json=st["status"])
    responses.get(f"{API}/rings/DATA/", json={"_items": [st["ring"]]})
    for name, items in (
        ("servers", st["servers"]),
        ("storenodes", nodes),
        ("disks", disks),
        ("rings/DATA/tasks", st["tasks"]),
    ):
        responses.get(f"{API}/{name}/", json={"_items": items, "_meta": {"count": len(items)}})


class Sproxyd:
    """A scripted connector: a dict of objects; optional 5xx, refusal, or 423s on DELETE."""

    def __init__(
        self, site: str, objects: dict, status: int = 0, refuse: bool = False, locked: int = 0, head_size: int = 0
    ) -> None:
        self.url = SPX[site]
        self.objects = objects  # shared between sites: the ring stores each object on both
        self.status = status
        self.locked = locked
        self.head_size = head_size  # a HEAD that lies about the size
        if refuse:
            responses.add(
                responses.GET,
                re.compile(re.escape(self.url) + ".*"),
                body=requests.exceptions.ConnectionError("refused"),
            )
            return
        for method in ("GET", "PUT", "HEAD", "DELETE"):
            responses.add_callback(method, re.compile(re.escape(self.url) + "/.*"), callback=self.handle)

    def handle(self, request) -> tuple:
        if self.status:
            return self.status, {}, "injected"
        tail = request.url[len(self.url) + 1 :]
        if tail == ".conf":
            return 200, {}, "ring=DATA\nby_path_enabled=0\n"
        key = tail
        if request.method == "PUT":
            self.objects[key] = (request.body, request.headers.get("x-scal-usermd"))
            return 200, {}, ""
        if request.method == "DELETE":
            if self.locked:
                self.locked -= 1
                return 423, {}, "locked"
            return (200 if self.objects.pop(key, None) else 404), {}, ""
        if key not in self.objects:
            return 404, {}, ""
        body, usermd = self.objects[key]
        size = self.head_size if request.method == "HEAD" and self.head_size else len(body)
        headers = {"X-Scal-Usermd": usermd, "Content-Length": str(size)}
        return 200, headers, (b"" if request.method == "HEAD" else body)


def run(capsys, check_mode: bool = False, **params) -> dict:
    args = {
        "supervisor_url": SUP,
        "supervisor_username": "supervisor",
        "supervisor_password": PASSWORD,
        "sites": ["dc1", "dc2"],
        "supervisor_site": "dc1",
        "sproxyd": [{"site": s, "url": u} for s, u in SPX.items()],
        "retries": 0,
        "canary_timeout": 5,
        "_ansible_check_mode": check_mode,
    }
    args.update(params)
    with patch_module_args(args), pytest.raises(SystemExit):
        scality_ring_info.main()
    out = capsys.readouterr().out
    assert PASSWORD not in out
    return json.loads(out)


def calls(method: str) -> list:
    return [c for c in responses.calls if c.request.method == method]


@responses.activate
def test_planned_healthy_ring_passes_with_a_cross_site_canary(capsys) -> None:
    supervisor()
    store: dict = {}
    Sproxyd("dc1", store), Sproxyd("dc2", store)
    r = run(capsys, canary_site="dc2", canary_cross_site=True)
    assert r["verdict"]["ok"], r["verdict"]["reasons"]
    assert r["changed"] is False
    assert r["ring"]["healthy"] and r["backlog"] == 0
    assert r["sites"]["dc1"]["nodes"] == {"total": 3, "healthy": 3, "unhealthy": [], "unreachable": []}
    c = r["canary"]
    assert c["passed"] and [s["step"] for s in c["steps"]] == [
        "put dc2",
        "get dc2",
        "get dc1",
        "head dc2",
        "delete dc2",
        "404 dc2",
        "404 dc1",
    ]
    assert store == {}, "the canary must be deleted"
    assert all(e["alive"] and e["latency_ms"] is not None for e in r["sproxyd"])


@responses.activate
def test_check_mode_reads_but_writes_nothing(capsys) -> None:
    supervisor()
    store: dict = {}
    Sproxyd("dc1", store), Sproxyd("dc2", store)
    r = run(capsys, check_mode=True)
    assert r["canary"]["performed"] is False and r["canary"]["skipped_reason"] == "check mode"
    assert calls("PUT") == [] and calls("DELETE") == []
    assert r["verdict"]["ok"]


@responses.activate
def test_a_node_down_fails_the_planned_verdict_and_names_it(capsys) -> None:
    st = copy.deepcopy(HEALTHY)
    st["nodes"] = _nodes(st["servers"])
    st["nodes"][1].update(state="OFFLINE", reachable=False)
    st["ring"].update(status="CRITICAL", state=["MISSING NODE"])
    st["tasks"] = [{"id": "rebuild-dc1", "zone": "dc1", "pending": 7}]
    supervisor(st)
    store: dict = {}
    Sproxyd("dc1", store), Sproxyd("dc2", store)
    r = run(capsys)
    v = r["verdict"]
    assert not v["ok"]
    assert "dc1: 1 of 3 nodes not healthy: dc1-node2" in v["reasons"]
    assert any("rebuild backlog of 7" in x for x in v["reasons"])
    assert r["backlog"] == 7


@responses.activate
def test_disaster_with_supervisor_and_sproxyd_of_the_lost_site_gone(capsys) -> None:
    supervisor(down=True)
    store: dict = {}
    Sproxyd("dc1", store, refuse=True), Sproxyd("dc2", store)
    r = run(capsys, mode="disaster", lost_site="dc1")
    v = r["verdict"]
    assert v["ok"], v["reasons"]
    assert v["sproxyd_only"] and v["surviving_sites"] == ["dc2"]
    assert any("dc1 is uniformly unreachable" in n for n in v["notes"])
    assert r["canary"]["site"] == "dc2" and r["canary"]["passed"]
    assert r["ring"] is None


@responses.activate
def test_disaster_where_the_lost_site_still_partly_answers_is_a_split(capsys) -> None:
    st = copy.deepcopy(HEALTHY)
    for s in st["servers"]:
        if s["zone"] == "dc2":
            s["state"] = ["MISSING"]
    st["nodes"] = _nodes(st["servers"])
    for n in st["nodes"]:
        if n["name"].startswith("dc2"):
            n.update(state="OFFLINE", reachable=False)
    supervisor(st)
    store: dict = {}
    Sproxyd("dc1", store), Sproxyd("dc2", store)  # dc2's connector still answers
    r = run(capsys, mode="disaster", lost_site="dc2")
    v = r["verdict"]
    assert not v["ok"] and v["split_suspected"]
    assert any("possible split" in x and "sproxyd" in x for x in v["reasons"])


@responses.activate
def test_disaster_refused_while_the_lost_site_fully_answers(capsys) -> None:
    supervisor()
    store: dict = {}
    Sproxyd("dc1", store), Sproxyd("dc2", store)
    r = run(capsys, mode="disaster", lost_site="dc1")
    assert not r["verdict"]["ok"] and not r["verdict"]["split_suspected"]
    assert any("dc1 is not lost" in x for x in r["verdict"]["reasons"])


@responses.activate
def test_delete_answered_423_is_retried_until_done(capsys) -> None:
    supervisor()
    store: dict = {}
    Sproxyd("dc1", store, locked=2), Sproxyd("dc2", store)
    r = run(capsys)
    assert r["canary"]["passed"], r["canary"]["error"]
    assert r["canary"]["delete_423_retries"] == 2
    assert len(calls("DELETE")) == 3
    assert store == {}


@responses.activate
def test_delete_locked_for_good_fails_the_canary_and_the_verdict(capsys) -> None:
    supervisor()
    store: dict = {}
    Sproxyd("dc1", store, locked=10**6), Sproxyd("dc2", store)
    r = run(capsys, canary_timeout=0.5)
    assert not r["canary"]["passed"]
    assert "423 Locked" in r["canary"]["error"]
    assert not r["verdict"]["ok"]


@responses.activate
def test_sproxyd_5xx_on_one_site_fails_planned(capsys) -> None:
    supervisor()
    store: dict = {}
    Sproxyd("dc1", store), Sproxyd("dc2", store, status=500)
    r = run(capsys)
    dc2 = next(e for e in r["sproxyd"] if e["site"] == "dc2")
    assert dc2["alive"] is False and dc2["status_code"] == 500
    assert any(x.startswith("dc2: sproxyd") and "HTTP 500" in x for x in r["verdict"]["reasons"])


@responses.activate
def test_fail_on_unhealthy_fails_the_task_with_the_reasons(capsys) -> None:
    supervisor()
    store: dict = {}
    Sproxyd("dc1", store), Sproxyd("dc2", store, status=503)
    r = run(capsys, fail_on_unhealthy=True, canary=False)
    assert r["failed"] is True
    assert "not fit for the planned failover" in r["msg"] and "dc2: sproxyd" in r["msg"]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"mode": "disaster"}, "needs lost_site"),
        ({"lost_site": "dc1"}, "only meaningful with mode=disaster"),
        ({"replication_class": 2}, "do not spread evenly"),
        ({"sproxyd": [{"site": "dc3", "url": "http://x:81/proxy/chord"}]}, "not one of"),
        ({"supervisor_password": None}, "needs supervisor_username and supervisor_password"),
        ({"mode": "disaster", "lost_site": "dc1", "canary_site": "dc1"}, "cannot be the lost site"),
    ],
)
@responses.activate
def test_bad_input_fails_before_any_request(capsys, params, message) -> None:
    r = run(capsys, **params)
    assert r["failed"] and message in r["msg"]
    assert len(responses.calls) == 0


@responses.activate
def test_canary_head_with_the_wrong_size_fails_and_cleans_up(capsys) -> None:
    supervisor()
    store: dict = {}
    Sproxyd("dc1", store, head_size=1), Sproxyd("dc2", store)
    r = run(capsys)
    assert not r["canary"]["passed"]
    assert "HEAD through dc1: size 1, not 4096" in r["canary"]["error"]
    assert store == {}, "a failed canary must still be deleted"
