"""snapmirror / snapmirror_info through ansible-playbook against two emulated ONTAP clusters.

A module-scoped fixture starts the lab's ONTAP emulator twice on 127.0.0.1 (dc1 source, dc2
destination, relationships dc1 -> dc2, each cluster its own process, TLS with a throw-away
CA). The modules run with ``ansible-playbook -i localhost, -c local``; every result is then
checked with the ONTAP REST API read directly (``requests``), and the volume data on the
shared SAN directory, never with the module under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ontap import OntapError
from ansible_collections.mailops.zimbra_geo.plugins.modules import snapmirror
from lab.ontap.testing import EmulatorPair

ROOT = Path(__file__).resolve().parents[2]
VOLUMES = ("mbox1_db", "mbox1_index", "mbox2_db", "mbox2_index")
DSTS = [f"svm_dc2:{v}" for v in VOLUMES]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):
    p = EmulatorPair(tmp_path_factory.mktemp("ontap"), volumes=VOLUMES)
    p.start()
    yield p
    p.stop()


@pytest.fixture(autouse=True)
def healed(pair: EmulatorPair):
    yield
    for emu in (pair.dc1, pair.dc2):
        pair.admin(emu, "DELETE", "faults")


def play(
    pair: EmulatorPair, tasks: list[dict], cluster: str = "dc2", check: bool = False, diff: bool = False
) -> dict[str, Any]:
    """Run tasks on localhost; returns {task name: result} from the json callback."""
    emu = pair.dc2 if cluster == "dc2" else pair.dc1
    playbook = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {
                "group/mailops.zimbra_geo.zimbra_geo": {
                    "hostname": "127.0.0.1",
                    "port": emu.port,
                    "password": pair.password,
                    "ca_path": str(pair.ca),
                }
            },
            "tasks": tasks,
        }
    ]
    path = pair.workdir / f"play-{time.monotonic_ns()}.yml"
    path.write_text(yaml.safe_dump(playbook))
    env = dict(
        os.environ,
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"),
    )
    argv = [
        "ansible-playbook",
        "-i",
        "localhost,",
        "-c",
        "local",
        str(path),
        "-e",
        f"ansible_python_interpreter={sys.executable}",
    ]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False)
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"ansible-playbook output is not JSON:\n{proc.stdout}\n{proc.stderr}") from None
    results = {}
    for task in out["plays"][0]["tasks"]:
        results[task["task"]["name"]] = task["hosts"]["localhost"]
    return results


def inproc(pair: EmulatorPair, **args: Any) -> dict[str, Any]:
    """The module's runner in this process (same client, library and emulator, no
    ansible-playbook start-up): a result shaped like the task's."""
    params = {k: v.get("default") for k, v in snapmirror.argument_spec().items()}
    params.update(hostname="127.0.0.1", port=pair.dc2.port, password=pair.password, ca_path=str(pair.ca), **args)
    try:
        result = snapmirror.SnapmirrorRunner(params, False, False).run()
    except OntapError as exc:
        return {"failed": True, "msg": str(exc)}
    result["failed"] = "failed_relationships" in result
    return result


def sm(name: str, **args: Any) -> dict:
    return {"name": name, "mailops.zimbra_geo.snapmirror": args, "ignore_errors": True}


def rest_state(pair: EmulatorPair, cluster: str = "dc2", source_side: bool = False) -> dict[str, dict]:
    emu = pair.dc2 if cluster == "dc2" else pair.dc1
    params = {"fields": "state,healthy,transfer,lag_time"}
    if source_side:
        params["list_destinations_only"] = "true"
    resp = pair.api(emu, "GET", "snapmirror/relationships", params=params)
    resp.raise_for_status()
    return {r["destination"]["path"]: r for r in resp.json()["records"]}


def vol(pair: EmulatorPair, cluster: str, name: str) -> Path:
    return pair.san / f"{cluster}-ontap" / name


def test_planned_failover_data_and_reverse(pair: EmulatorPair) -> None:
    for v in VOLUMES:
        (vol(pair, "dc1", v) / "before.txt").write_text(f"{v} written before the final update\n")
    before = rest_state(pair)

    # Check mode: predicted, nothing sent (no new transfer on the cluster).
    res = play(pair, [sm("update", svm="svm_dc2", state="updated")], check=True)["update"]
    assert res["changed"] is True and all(r["actions"] == ["update"] for r in res["relationships"])
    after_check = rest_state(pair)
    assert {p: r["transfer"]["uuid"] for p, r in after_check.items()} == {
        p: r["transfer"]["uuid"] for p, r in before.items()
    }

    res = play(pair, [sm("update", svm="svm_dc2", state="updated")])["update"]
    assert not res.get("failed"), res
    assert res["changed"] is True
    assert sorted(r["destination"] for r in res["relationships"]) == sorted(DSTS)
    for v in VOLUMES:
        assert (vol(pair, "dc2", v) / "before.txt").read_text().startswith(v)
    # Nothing new on the source: the re-run's transfers move nothing, so nothing changed.
    rerun = play(pair, [sm("update", svm="svm_dc2", state="updated")])["update"]
    assert rerun["changed"] is False, rerun
    updated_at = time.monotonic()

    for v in VOLUMES:
        (vol(pair, "dc1", v) / "after.txt").write_text("written after the final update\n")
    # Let the exported snapshot age by more than a second so the lag is measurable.
    time.sleep(max(0.0, 1.2 - (time.monotonic() - updated_at)))
    res = play(pair, [sm("break", relationships=DSTS, state="broken_off")], diff=True)["break"]
    assert not res.get("failed"), res
    assert res["diff"]["before"] == dict.fromkeys(DSTS, "snapmirrored")
    assert res["diff"]["after"] == dict.fromkeys(DSTS, "broken_off")
    for r in res["relationships"]:
        assert r["actions"] == ["quiesce", "break"]
        assert r["lag_at_break_seconds"] >= 1  # covers the writes made after the update
    state = rest_state(pair)
    assert {p: r["state"] for p, r in state.items()} == dict.fromkeys(DSTS, "broken_off")
    for v in VOLUMES:
        assert (vol(pair, "dc2", v) / "before.txt").exists()
        assert not (vol(pair, "dc2", v) / "after.txt").exists()
        (vol(pair, "dc2", v) / "standby.txt").write_text("written on the standby after break\n")

    again = play(pair, [sm("break", relationships=DSTS, state="broken_off")])["break"]
    assert again["changed"] is False and all(r["actions"] == [] for r in again["relationships"])

    # Failback: reverse resync, run against dc2 (today's destination).
    res = play(pair, [sm("reverse", svm="svm_dc2", state="reversed")])["reverse"]
    assert not res.get("failed"), res
    dc1 = rest_state(pair, "dc1")
    assert {p: (r["state"], r["source"]["path"]) for p, r in dc1.items()} == {
        f"svm_dc1:{v}": ("snapmirrored", f"svm_dc2:{v}") for v in VOLUMES
    }
    assert rest_state(pair, "dc2") == {}
    for v in VOLUMES:
        # dc1 now mirrors dc2: the standby's writes are there, dc1's unreplicated write is gone.
        assert (vol(pair, "dc1", v) / "standby.txt").exists()
        assert not (vol(pair, "dc1", v) / "after.txt").exists()
    again = play(pair, [sm("reverse", svm="svm_dc2", state="reversed")])["reverse"]
    assert again["changed"] is False, again

    # And back to the original direction: break on dc1, reverse from dc1.
    res = play(
        pair,
        [sm("break", svm="svm_dc1", state="broken_off"), sm("reverse", svm="svm_dc1", state="reversed")],
        cluster="dc1",
    )
    assert not res["break"].get("failed") and not res["reverse"].get("failed"), res
    assert {p: r["state"] for p, r in rest_state(pair).items()} == dict.fromkeys(DSTS, "snapmirrored")


def test_check_mode_and_diff_change_nothing(pair: EmulatorPair) -> None:
    before = rest_state(pair)
    res = play(pair, [sm("pause", relationships=DSTS[:2], state="paused")], check=True, diff=True)["pause"]
    assert res["changed"] is True
    assert res["diff"]["after"] == dict.fromkeys(DSTS[:2], "paused")
    assert {p: r["state"] for p, r in rest_state(pair).items()} == {p: r["state"] for p, r in before.items()}
    jobs = pair.api(pair.dc2, "GET", "cluster/jobs", params={"fields": "description,start_time"}).json()
    assert not [
        j
        for j in jobs["records"]
        if j["description"] == "SnapMirror quiesce"
        and j["start_time"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 2))
    ]


def test_pause_resume_idempotent(pair: EmulatorPair) -> None:
    res = play(
        pair,
        [
            sm("pause", relationships=DSTS[:1], state="paused"),
            sm("pause again", relationships=DSTS[:1], state="paused"),
            sm("resume", relationships=DSTS[:1], state="snapmirrored"),
            sm("resume again", relationships=DSTS[:1], state="snapmirrored"),
        ],
    )
    assert [res[k]["changed"] for k in ("pause", "pause again", "resume", "resume again")] == [
        True,
        False,
        True,
        False,
    ], res
    assert res["resume"]["relationships"][0]["actions"] == ["resume"]
    assert rest_state(pair)[DSTS[0]]["state"] == "snapmirrored"


def test_bad_input_refused_before_any_change(pair: EmulatorPair) -> None:
    before = rest_state(pair)
    res = play(
        pair,
        [
            sm("unknown", relationships=[DSTS[0], "svm_dc2:nope"], state="broken_off"),
            sm("wrong cluster", relationships=["svm_dc1:mbox1_db"], state="broken_off"),
            sm("bad credentials", relationships=DSTS[:1], state="paused", password="wrong"),
            sm("reverse live", relationships=DSTS[:1], state="reversed"),
        ],
    )
    assert "svm_dc2:nope" in res["unknown"]["msg"] and "nothing was changed" in res["unknown"]["msg"]
    assert "not on cluster dc2-ontap" in res["wrong cluster"]["msg"]
    assert "refused the credentials" in res["bad credentials"]["msg"]
    assert "break it first" in res["reverse live"]["msg"]
    assert all(res[k]["failed"] for k in res)
    assert {p: r["state"] for p, r in rest_state(pair).items()} == {p: r["state"] for p, r in before.items()}


def test_faults(pair: EmulatorPair) -> None:
    """Each fault through ansible-playbook once (a failing job); the rest through the module's
    runner in this process, to keep the suite fast."""
    # A failing job: the module reports the job's message and the relationship stays put.
    pair.admin(
        pair.dc2,
        "POST",
        "faults",
        json={"type": "job_failure", "match": DSTS[0], "message": "Injected: quiesce failed."},
    )
    res = play(pair, [sm("pause", relationships=DSTS[:2], state="paused")])["pause"]
    assert res["failed"] and res["failed_relationships"] == [DSTS[0]]
    assert "Injected: quiesce failed." in res["msg"]
    state = rest_state(pair)
    assert state[DSTS[0]]["state"] == "snapmirrored" and state[DSTS[1]]["state"] == "paused"
    pair.admin(pair.dc2, "DELETE", "faults")

    # A refused transition.

    pair.admin(pair.dc2, "POST", "faults", json={"type": "refuse_transition", "match": DSTS[0]})
    res = inproc(pair, relationships=DSTS[:1], state="paused")
    assert res["failed"] and "13303818" in res["msg"]
    pair.admin(pair.dc2, "DELETE", "faults")

    # Unhealthy: refused without force; with force the resume goes ahead.
    pair.admin(
        pair.dc2,
        "POST",
        "faults",
        json={"type": "unhealthy", "match": DSTS[1], "message": "Injected: source unreachable."},
    )
    res = {
        "resume": inproc(pair, relationships=DSTS[1:2], state="snapmirrored"),
        "forced": inproc(pair, relationships=DSTS[1:2], state="snapmirrored", force=True),
    }
    assert res["resume"]["failed"] and "Injected: source unreachable." in res["resume"]["msg"]
    assert not res["forced"].get("failed") and res["forced"]["changed"]
    pair.admin(pair.dc2, "DELETE", "faults")

    # A long transfer: a break with transfer_running=fail refuses, with abort aborts it.
    pair.admin(pair.dc2, "POST", "faults", json={"type": "transfer_running", "match": DSTS[2]})
    rel = rest_state(pair)[DSTS[2]]
    pair.api(pair.dc2, "POST", f"snapmirror/relationships/{rel['uuid']}/transfers", json={}).raise_for_status()
    res = {
        "fail": inproc(pair, relationships=DSTS[2:3], state="broken_off", transfer_running="fail"),
        "abort": inproc(pair, relationships=DSTS[2:3], state="broken_off", transfer_running="abort"),
    }
    assert res["fail"]["failed"] and "transfer is running" in res["fail"]["msg"]
    assert not res["abort"].get("failed"), res["abort"]
    assert res["abort"]["relationships"][0]["actions"] == ["abort", "quiesce", "break"]
    assert rest_state(pair)[DSTS[2]]["state"] == "broken_off"
    pair.admin(pair.dc2, "DELETE", "faults")
    res = inproc(pair, relationships=DSTS[2:3], state="snapmirrored")
    assert res["relationships"][0]["actions"] == ["resync"] and not res.get("failed")

    # A failed update transfer is reported with ONTAP's reason.
    pair.admin(pair.dc2, "POST", "faults", json={"type": "transfer_failure", "match": DSTS[3]})
    res = inproc(pair, relationships=DSTS[3:], state="updated")
    assert res["failed"] and "update transfer failed" in res["msg"]
    assert rest_state(pair)[DSTS[3]]["healthy"] is False
    pair.admin(pair.dc2, "DELETE", "faults")
    res = inproc(pair, relationships=DSTS[3:], state="updated", force=True)
    assert not res.get("failed") and rest_state(pair)[DSTS[3]]["healthy"] is True

    # Slow job: a short wait_timeout gives a clear timeout naming the step.
    pair.admin(pair.dc2, "POST", "faults", json={"type": "slow_job", "match": DSTS[0], "seconds": 5})
    res = inproc(pair, relationships=DSTS[:1], state="paused", wait_timeout=1)
    assert res["failed"] and "timed out after 1 s waiting for step quiesce" in res["msg"]
    pair.admin(pair.dc2, "DELETE", "faults")
    deadline = time.monotonic() + 10
    while rest_state(pair)[DSTS[0]]["state"] != "paused" and time.monotonic() < deadline:
        time.sleep(0.1)
    inproc(pair, relationships=DSTS, state="snapmirrored")

    # Unreachable cluster and HTTP 5xx.
    pair.admin(pair.dc2, "POST", "faults", json={"type": "unreachable"})
    res = inproc(pair, relationships=DSTS[:1], state="paused", timeout=3)
    assert res["failed"] and "is unreachable" in res["msg"] and f"127.0.0.1:{pair.dc2.port}" in res["msg"]
    pair.admin(pair.dc2, "DELETE", "faults")
    pair.admin(pair.dc2, "POST", "faults", json={"type": "server_error", "status": 500})
    res = inproc(pair, relationships=DSTS[:1], state="paused")
    assert res["failed"] and "HTTP 500" in res["msg"]


def test_info_and_rpo(pair: EmulatorPair) -> None:
    info = {"name": "info", "mailops.zimbra_geo.snapmirror_info": {"svm": "svm_dc2"}, "ignore_errors": True}
    rpo = {"name": "rpo", "mailops.zimbra_geo.snapmirror_info": {"svm": "svm_dc2", "max_lag": 0}, "ignore_errors": True}
    time.sleep(1.1)  # age the exported snapshots past the 0 s RPO
    res = play(pair, [info, rpo])
    direct = rest_state(pair)
    got = {r["destination"]: r for r in res["info"]["relationships"]}
    assert set(got) == set(direct)
    for path, r in direct.items():
        assert got[path]["state"] == r["state"] and got[path]["healthy"] == r["healthy"]
        assert got[path]["transfer_state"] == r["transfer"]["state"]
    assert res["info"]["summary"]["total"] == len(VOLUMES)
    assert res["rpo"]["failed"] and sorted(res["rpo"]["lagging"]) == sorted(DSTS)


def test_initialize_copies_the_baseline(tmp_path_factory: pytest.TempPathFactory) -> None:
    with EmulatorPair(tmp_path_factory.mktemp("ontap-init"), volumes=("fresh",), initialized=False) as fresh:
        (fresh.san / "dc1-ontap" / "fresh" / "seed.txt").write_text("baseline data\n")
        task = sm("init", relationships=["svm_dc2:fresh"], state="snapmirrored")
        res = play(fresh, [task, dict(task, name="again")])
        assert res["init"]["relationships"][0]["actions"] == ["initialize"] and not res["init"].get("failed")
        assert res["again"]["changed"] is False
        rel = rest_state(fresh)["svm_dc2:fresh"]
        assert rel["state"] == "snapmirrored" and rel["transfer"]["state"] == "success"
        assert (fresh.san / "dc2-ontap" / "fresh" / "seed.txt").read_text() == "baseline data\n"


def test_lun_map_maps_and_unmaps_on_the_emulator(pair: EmulatorPair) -> None:
    """lun_map through ansible-playbook against the emulated cluster (the same ONTAP shapes as
    its scripted unit tests): the standby's read-only LUNs mapped to a host's igroup, checked
    with the REST API read directly; a second run changes nothing; absent unmaps them."""
    igroup = {"svm": {"name": "svm_dc2"}, "name": "dc2-mbox9", "protocol": "iscsi", "os_type": "linux",
              "initiators": [{"name": "iqn.2026-12.test.example:dc2-mbox9"}]}
    assert pair.api(pair.dc2, "POST", "protocols/san/igroups", json=igroup).status_code == 201

    def maps() -> list[tuple[str, int]]:
        records = pair.api(pair.dc2, "GET", "protocols/san/lun-maps",
                           params={"igroup.name": "dc2-mbox9", "fields": "lun.name,logical_unit_number"}).json()
        return sorted((m["lun"]["name"], m["logical_unit_number"]) for m in records["records"])

    task = {"name": "map", "mailops.zimbra_geo.lun_map": {"svm": "svm_dc2", "igroup": "dc2-mbox9",
                                                          "volumes": ["mbox1_db", "mbox1_index"]}}
    first = play(pair, [task])["map"]
    assert first.get("changed") and not first.get("failed"), first
    assert maps() == [("/vol/mbox1_db/lun0", 0), ("/vol/mbox1_index/lun0", 1)]
    assert all(m["read_only"] and m["mapped"] for m in first["maps"]), first["maps"]
    again = play(pair, [task])["map"]
    assert not again.get("changed") and not again.get("failed"), again
    task["mailops.zimbra_geo.lun_map"]["state"] = "absent"
    gone = play(pair, [task])["map"]
    assert gone.get("changed") and sorted(gone["unmapped"]) == ["/vol/mbox1_db/lun0", "/vol/mbox1_index/lun0"]
    assert maps() == []
    # A volume without a LUN of that name, refused before any change.
    task["mailops.zimbra_geo.lun_map"].update(state="present", volumes=["mbox1_db", "no_such_volume"])
    refused = play(pair, [task])["map"]
    assert refused.get("failed") and "no_such_volume" in refused["msg"], refused
    assert maps() == []
