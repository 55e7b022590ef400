"""ScalityClient against scripted Supervisor and sproxyd exchanges (the ``responses`` library)."""

from __future__ import annotations

import pytest
import requests
import responses
from responses import matchers
from urllib3.exceptions import MaxRetryError, ReadTimeoutError

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._scality import (
    ScalityClient,
    ScalityError,
    summarize_sites,
    verdict,
)

SUP = "https://supervisor.test"
API = f"{SUP}/api/v0.1"
SPX = "http://sproxyd.test:81/proxy/chord"
KEY = "0123456789ABCDEF0123456789ABCDEF01234567"


def client(**kw) -> ScalityClient:
    kw.setdefault("backoff", 0)
    return ScalityClient(SUP, "supervisor", "s3cret", **kw)


@responses.activate
def test_list_items_follows_offset_and_limit_until_count() -> None:
    items = [{"id": f"n{i}"} for i in range(5)]
    for offset in (0, 2, 4):
        responses.get(
            f"{API}/storenodes/",
            match=[matchers.query_param_matcher({"offset": str(offset), "limit": "2"})],
            json={"_items": items[offset : offset + 2], "_meta": {"count": 5}},
        )
    assert client().list_items("storenodes", page_size=2) == items
    assert len(responses.calls) == 3
    # Basic auth is sent on every call.
    assert all(c.request.headers["Authorization"].startswith("Basic ") for c in responses.calls)


@responses.activate
def test_list_items_rejects_an_answer_without_meta() -> None:
    responses.get(f"{API}/servers/", json={"items": []})
    with pytest.raises(ScalityError) as err:
        client().list_items("servers")
    assert err.value.kind == "protocol"


@responses.activate
def test_get_item_unwraps_the_single_item() -> None:
    responses.get(f"{API}/rings/DATA/", json={"_items": [{"name": "DATA", "status": "OK"}]})
    assert client().get_item("rings", "DATA")["status"] == "OK"


@responses.activate
def test_reads_are_retried_on_503_then_succeed() -> None:
    responses.get(f"{API}/status/", status=503)
    responses.get(f"{API}/status/", json={"supv2_status": "Running"})
    assert client(retries=2).supervisor_status() == {"supv2_status": "Running"}
    assert len(responses.calls) == 2


@responses.activate
def test_503_after_the_retries_is_an_http_error() -> None:
    responses.get(f"{API}/status/", status=503, body="down")
    with pytest.raises(ScalityError) as err:
        client(retries=1).supervisor_status()
    assert err.value.status == 503
    assert len(responses.calls) == 2


@responses.activate
def test_bad_credentials_are_named() -> None:
    responses.get(f"{API}/status/", status=401)
    with pytest.raises(ScalityError, match="authentication failed") as err:
        client().supervisor_status()
    assert err.value.kind == "auth"


@responses.activate
def test_connection_refused_is_unreachable() -> None:
    responses.get(f"{API}/status/", body=requests.exceptions.ConnectionError("refused"))
    with pytest.raises(ScalityError) as err:
        client(retries=0).supervisor_status()
    assert err.value.kind == "unreachable"


@responses.activate
def test_a_read_timeout_after_retries_is_a_timeout_not_unreachable() -> None:
    # What requests raises once urllib3 has spent its read retries on a silent server.
    reason = ReadTimeoutError(None, f"{API}/status/", "Read timed out.")
    responses.get(f"{API}/status/", body=requests.exceptions.ConnectionError(MaxRetryError(None, "/", reason)))
    with pytest.raises(ScalityError, match="no answer within") as err:
        client(retries=0, timeout=0.5).supervisor_status()
    assert err.value.kind == "timeout"


@responses.activate
def test_ring_tasks_absent_from_the_api_is_none() -> None:
    responses.get(f"{API}/rings/DATA/tasks/", status=404, json={"error": "not found"})
    assert client().ring_tasks("DATA") is None


@responses.activate
def test_sproxyd_conf_parses_key_value_lines() -> None:
    responses.get(f"{SPX}/.conf", body='ring=DATA\n"by_path_enabled": 1,\nsite=dc1\n')
    conf = client().sproxyd_conf(SPX)
    assert conf["conf"] == {"ring": "DATA", "by_path_enabled": "1", "site": "dc1"}
    assert conf["latency_ms"] >= 0


@responses.activate
def test_sproxyd_object_round_trip_statuses() -> None:
    responses.put(f"{SPX}/{KEY}", match=[matchers.header_matcher({"x-scal-usermd": "bWQ="})])
    responses.get(f"{SPX}/{KEY}", body=b"abc", headers={"X-Scal-Usermd": "bWQ="})
    responses.head(f"{SPX}/{KEY}", status=404)
    responses.delete(f"{SPX}/{KEY}", status=423)
    c = client()
    c.sproxyd_put(SPX, KEY, b"abc", "bWQ=")
    body, headers = c.sproxyd_get(SPX, KEY)
    assert body == b"abc" and headers["x-scal-usermd"] == "bWQ="
    assert c.sproxyd_head(SPX, KEY) is None
    assert c.sproxyd_delete(SPX, KEY) == 423


@responses.activate
def test_sproxyd_put_is_not_retried() -> None:
    responses.put(f"{SPX}/{KEY}", status=503)
    with pytest.raises(ScalityError) as err:
        client(retries=3).sproxyd_put(SPX, KEY, b"x")
    assert err.value.status == 503
    assert len(responses.calls) == 1


def test_tls_verification_is_on_by_default_and_ca_path_wins() -> None:
    assert client().session.verify is True
    assert client(ca_path="/ca.pem").session.verify == "/ca.pem"
    assert client(validate_certs=False, ca_path="/ca.pem").session.verify is False
    assert client().session.trust_env is False


# -- judgement -------------------------------------------------------------------------------
SERVERS = [
    {"id": "s1", "name": "s1", "zone": "dc1", "management_ip_address": "10.0.1.1", "state": ["ONLINE"]},
    {"id": "s2", "name": "s2", "zone": "dc2", "management_ip_address": "10.0.2.1", "state": ["MISSING"]},
]
NODES = [
    {"name": "n1", "admin_address": "10.0.1.1", "state": "RUN", "reachable": True},
    {"name": "n2", "admin_address": "10.0.2.1", "state": "OFFLINE", "reachable": False},
]
DISKS = [{"id": "d1", "server": "s1", "state": ["OK"]}, {"id": "d2", "host": "10.0.2.1", "state": ["CONNERR"]}]


def test_summarize_places_nodes_and_disks_through_their_server() -> None:
    s = summarize_sites(["dc1", "dc2"], SERVERS, NODES, DISKS)
    assert s["dc1"]["nodes"] == {"total": 1, "healthy": 1, "unhealthy": [], "unreachable": []}
    assert s["dc2"]["servers"]["unhealthy"] == ["s2"]
    assert s["dc2"]["disks"]["unhealthy"] == ["10.0.2.1:d2"]


def _verdict(**kw):
    args = {
        "mode": "disaster",
        "sites": ["dc1", "dc2"],
        "lost_site": "dc2",
        "supervisor": {"reachable": True, "status": "Running", "error": None},
        "supervisor_site": "dc1",
        "ring": {"name": "DATA", "status": "CRITICAL", "state": ["MISSING NODE"]},
        "summary": summarize_sites(["dc1", "dc2"], SERVERS, NODES, DISKS),
        "backlog": 0,
        "endpoints": [
            {"site": "dc1", "url": "u1", "alive": True, "error": None},
            {"site": "dc2", "url": "u2", "alive": False, "error": "refused"},
        ],
        "canary": {"performed": True, "passed": True, "site": "dc1"},
        "copies_per_site": 1,
        "max_backlog": 0,
        "min_free_percent": 10,
    }
    args.update(kw)
    return verdict(**args)


def test_disaster_with_the_lost_site_uniformly_down_is_ok() -> None:
    v = _verdict()
    assert v["ok"], v["reasons"]
    assert not v["split_suspected"]


def test_disaster_with_the_lost_sproxyd_still_answering_is_a_split() -> None:
    v = _verdict(
        endpoints=[
            {"site": "dc1", "url": "u1", "alive": True, "error": None},
            {"site": "dc2", "url": "u2", "alive": True, "error": None},
        ]
    )
    assert not v["ok"] and v["split_suspected"]
    assert any("possible split" in r and "dc2" in r for r in v["reasons"])


def test_surviving_site_with_too_few_nodes_fails_the_verdict() -> None:
    v = _verdict(copies_per_site=2)
    assert not v["ok"]
    assert any("cannot hold the 2 copies" in r for r in v["reasons"])
