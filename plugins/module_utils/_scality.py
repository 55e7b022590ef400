# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scality RING client: the Supervisor REST API and the sproxyd connectors.

:class:`ScalityClient` speaks both HTTP APIs through one ``requests`` session: Basic auth and
TLS verification for the Supervisor (``/api/v0.1/``, collections paged with
``offset``/``limit`` into ``{"_items": [...], "_meta": {"count": N}}``), plain HTTP for
sproxyd (``<endpoint>/<40-hex key>``, ``<endpoint>/.conf``). Idempotent reads are retried on
connection errors and 502/503/504 by urllib3's ``Retry`` with a short backoff; every call
has a timeout. Every failure is raised as :class:`ScalityError`; nothing here calls
``fail_json``.

The second half holds the pure judgement used by ``scality_ring_info``: a per-site summary
of servers, nodes and disks, and the verdict for a planned or a disaster failover.
"""

from __future__ import annotations

import re
import time
import traceback
from typing import Any

try:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.exceptions import ReadTimeoutError
    from urllib3.util.retry import Retry
except ImportError:
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None

API_PREFIX = "/api/v0.1"
PAGE_SIZE = 100
MAX_PAGES = 1000
RETRY_STATUSES = (502, 503, 504)
# ``key=value`` (older sproxyd) or ``"key": value,`` (JSON configuration), one per line.
CONF_LINE = re.compile(r'^\s*"?([\w.-]+)"?\s*[:=]\s*"?([^",]*?)"?\s*,?\s*$')


class ScalityError(Exception):
    """Any failure talking to the Supervisor or to a sproxyd, or invalid input.

    ``kind`` is a short category: ``input``, ``unreachable``, ``timeout``, ``tls``, ``auth``,
    ``http``, ``protocol``. ``status`` is the HTTP status when there was one.
    """

    def __init__(self, message: str, url: str | None = None, status: int | None = None, kind: str = "error") -> None:
        self.url = url
        self.status = status
        self.kind = kind
        super().__init__(f"{url}: {message}" if url else message)


def scality_argument_spec() -> dict:
    """The connection options shared by the modules that talk to a Scality RING."""
    return {
        "supervisor_url": {"type": "str"},
        "supervisor_username": {"type": "str"},
        "supervisor_password": {"type": "str", "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "timeout": {"type": "float", "default": 10.0},
        "retries": {"type": "int", "default": 2},
    }


def as_list(value: Any) -> list:
    """The Supervisor writes some states as a string and some as a list of strings."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


class ScalityClient:
    """One session for the Supervisor and every sproxyd endpoint of a RING."""

    def __init__(
        self,
        supervisor_url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        validate_certs: bool = True,
        ca_path: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
    ) -> None:
        if not HAS_REQUESTS:  # pragma: no cover - the module checks first
            raise ScalityError("the requests library is required", kind="input")
        if timeout <= 0:
            raise ScalityError("timeout must be positive", kind="input")
        if retries < 0:
            raise ScalityError("retries must not be negative", kind="input")
        self.supervisor_url = supervisor_url.rstrip("/") if supervisor_url else None
        self.timeout = timeout
        self.session = requests.Session()
        # Lab and datacenter addresses must never go through an environment HTTP proxy, and
        # an environment CA bundle must not silently replace ca_path.
        self.session.trust_env = False
        self.session.verify = (ca_path or True) if validate_certs else False
        self.auth = (username, password) if username is not None else None
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=backoff,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset(["GET", "HEAD"]),
            raise_on_status=False,
            respect_retry_after_header=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    # -- transport ---------------------------------------------------------------------------
    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        try:
            return self.session.request(method, url, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise ScalityError(f"TLS verification failed: {exc}", url=url, kind="tls") from exc
        except requests.exceptions.Timeout as exc:
            raise ScalityError(f"no answer within {self.timeout:g} s", url=url, kind="timeout") from exc
        except requests.exceptions.RetryError as exc:
            raise ScalityError(f"still failing after retries: {exc}", url=url, kind="http") from exc
        except requests.exceptions.ConnectionError as exc:
            # A read timeout that exhausted urllib3's retries arrives as a ConnectionError.
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            if isinstance(reason, ReadTimeoutError):
                raise ScalityError(f"no answer within {self.timeout:g} s", url=url, kind="timeout") from exc
            raise ScalityError(f"cannot connect: {exc}", url=url, kind="unreachable") from exc
        except requests.exceptions.RequestException as exc:
            raise ScalityError(str(exc), url=url, kind="protocol") from exc

    # -- Supervisor -------------------------------------------------------------------------
    def _supervisor_get(self, path: str, params: dict | None = None) -> dict:
        if not self.supervisor_url:
            raise ScalityError("no supervisor_url given", kind="input")
        url = f"{self.supervisor_url}{API_PREFIX}/{path}"
        resp = self._request("GET", url, params=params, auth=self.auth, headers={"Accept": "application/json"})
        if resp.status_code == 401:
            raise ScalityError(
                "authentication failed (check supervisor_username and supervisor_password)",
                url=url,
                status=401,
                kind="auth",
            )
        if resp.status_code >= 400:
            raise ScalityError(
                f"HTTP {resp.status_code}: {resp.text.strip()[:200]}", url=url, status=resp.status_code, kind="http"
            )
        try:
            body = resp.json()
        except ValueError as exc:
            raise ScalityError("the answer is not JSON", url=url, status=resp.status_code, kind="protocol") from exc
        if not isinstance(body, dict):
            raise ScalityError("the answer is not a JSON object", url=url, status=resp.status_code, kind="protocol")
        return body

    def supervisor_status(self) -> dict:
        return self._supervisor_get("status/")

    def list_items(self, collection: str, page_size: int = PAGE_SIZE) -> list:
        """Every item of a collection, following ``offset``/``limit`` until ``_meta.count``."""
        items: list = []
        for _page in range(MAX_PAGES):
            body = self._supervisor_get(f"{collection}/", params={"offset": len(items), "limit": page_size})
            try:
                page = body["_items"]
                count = int(body["_meta"]["count"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ScalityError(f"{collection}: no _items/_meta.count in the answer", kind="protocol") from exc
            items.extend(page)
            if not page or len(items) >= count:
                return items
        raise ScalityError(f"{collection}: more than {MAX_PAGES} pages", kind="protocol")

    def get_item(self, collection: str, ident: str) -> dict:
        body = self._supervisor_get(f"{collection}/{ident}/")
        items = body.get("_items")
        if not isinstance(items, list) or len(items) != 1:
            raise ScalityError(f"{collection}/{ident}: expected one item in _items", kind="protocol")
        return items[0]

    def ring_tasks(self, ring: str) -> list | None:
        """Rebuild tasks of a ring, or None where the Supervisor does not publish them."""
        try:
            return self.list_items(f"rings/{ring}/tasks")
        except ScalityError as exc:
            if exc.status in (404, 405, 501):
                return None
            raise

    # -- sproxyd ----------------------------------------------------------------------------
    def sproxyd_conf(self, endpoint: str) -> dict:
        """``<endpoint>/.conf`` as a dict; with ``latency_ms`` of the exchange."""
        url = f"{endpoint.rstrip('/')}/.conf"
        start = time.monotonic()
        resp = self._request("GET", url)
        latency = (time.monotonic() - start) * 1000.0
        if resp.status_code != 200:
            raise ScalityError(f"HTTP {resp.status_code}", url=url, status=resp.status_code, kind="http")
        conf = {}
        for line in resp.text.splitlines():
            match = CONF_LINE.match(line)
            if match:
                conf[match.group(1)] = match.group(2)
        return {"conf": conf, "latency_ms": round(latency, 3)}

    def _object_url(self, endpoint: str, key: str) -> str:
        return f"{endpoint.rstrip('/')}/{key}"

    def sproxyd_put(self, endpoint: str, key: str, data: bytes, usermd: str | None = None) -> None:
        url = self._object_url(endpoint, key)
        headers = {"Content-Type": "application/octet-stream"}
        if usermd is not None:
            headers["x-scal-usermd"] = usermd
        resp = self._request("PUT", url, data=data, headers=headers)
        if resp.status_code not in (200, 201, 204):
            raise ScalityError(f"PUT answered HTTP {resp.status_code}", url=url, status=resp.status_code, kind="http")

    def sproxyd_get(self, endpoint: str, key: str) -> tuple | None:
        """``(body, headers)``, or None for 404."""
        url = self._object_url(endpoint, key)
        resp = self._request("GET", url)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise ScalityError(f"GET answered HTTP {resp.status_code}", url=url, status=resp.status_code, kind="http")
        return resp.content, resp.headers

    def sproxyd_head(self, endpoint: str, key: str) -> Any:
        """The headers, or None for 404."""
        url = self._object_url(endpoint, key)
        resp = self._request("HEAD", url)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise ScalityError(f"HEAD answered HTTP {resp.status_code}", url=url, status=resp.status_code, kind="http")
        return resp.headers

    def sproxyd_delete(self, endpoint: str, key: str) -> int:
        """The HTTP status: 200 deleted, 404 absent, 423 locked (the caller decides to retry)."""
        url = self._object_url(endpoint, key)
        resp = self._request("DELETE", url)
        if resp.status_code in (200, 202, 204, 404, 423):
            return resp.status_code
        raise ScalityError(f"DELETE answered HTTP {resp.status_code}", url=url, status=resp.status_code, kind="http")


# -- judgement (pure) --------------------------------------------------------------------------
def _unhealthy(items: list, ok: Any) -> list:
    return [i.get("name") or i.get("id") for i in items if not ok(i)]


def server_ok(server: dict) -> bool:
    return as_list(server.get("state")) == ["ONLINE"]


def node_ok(node: dict) -> bool:
    return (
        as_list(node.get("state")) == ["RUN"]
        and bool(node.get("reachable"))
        and not node.get("conf_mismatch")
        and not node.get("tasks_blocked")
    )


def disk_ok(disk: dict) -> bool:
    return as_list(disk.get("state")) == ["OK"]


def summarize_sites(sites: list, servers: list, nodes: list, disks: list) -> dict:
    """Per site (the servers' ``zone``): totals and the names of what is not healthy.

    Nodes and disks carry no zone: a node belongs to the server whose management address is
    its ``admin_address``; a disk to the server named in ``server`` or addressed by ``host``.
    """
    zone_of_server: dict = {}
    for srv in servers:
        zone = srv.get("zone")
        for ref in (srv.get("id"), srv.get("name"), srv.get("management_ip_address")):
            if ref is not None:
                zone_of_server[str(ref)] = zone
    out: dict = {}
    for site in sites:
        s_servers = [s for s in servers if s.get("zone") == site]
        s_nodes = [n for n in nodes if zone_of_server.get(str(n.get("admin_address"))) == site]
        s_disks = [
            d
            for d in disks
            if zone_of_server.get(str(d.get("server"))) == site or zone_of_server.get(str(d.get("host"))) == site
        ]
        out[site] = {
            "servers": {"total": len(s_servers), "unhealthy": _unhealthy(s_servers, server_ok)},
            "nodes": {
                "total": len(s_nodes),
                "unhealthy": _unhealthy(s_nodes, node_ok),
                "unreachable": [n.get("name") for n in s_nodes if not n.get("reachable")],
            },
            "disks": {
                "total": len(s_disks),
                # A disk's name is only unique on its server: name them server:disk.
                "unhealthy": [
                    f"{d.get('server') or d.get('host')}:{d.get('name') or d.get('id')}"
                    for d in s_disks
                    if not disk_ok(d)
                ],
            },
        }
        for part in ("servers", "nodes", "disks"):
            out[site][part]["healthy"] = out[site][part]["total"] - len(out[site][part]["unhealthy"])
    unplaced = [n.get("name") for n in nodes if zone_of_server.get(str(n.get("admin_address"))) not in sites]
    if unplaced:
        out["_unplaced_nodes"] = unplaced
    return out


def _site_whole(site: str, summary: dict | None, endpoints: list, copies: int, reasons: list) -> None:
    """Append to ``reasons`` why ``site`` is not whole (nothing if it is)."""
    if summary is not None:
        s = summary[site]
        if s["servers"]["total"] == 0:
            reasons.append(f"{site}: the Supervisor lists no server in this zone")
        for part in ("servers", "nodes", "disks"):
            if s[part]["unhealthy"]:
                reasons.append(
                    f"{site}: {len(s[part]['unhealthy'])} of {s[part]['total']} {part} not healthy: "
                    f"{', '.join(map(str, s[part]['unhealthy']))}"
                )
        if s["nodes"]["healthy"] < copies:
            reasons.append(
                f"{site}: {s['nodes']['healthy']} healthy nodes cannot hold the {copies} copies "
                "each object keeps on this site"
            )
    mine = [e for e in endpoints if e["site"] == site]
    if not mine:
        reasons.append(f"{site}: no sproxyd endpoint given")
    for e in mine:
        if not e["alive"]:
            reasons.append(f"{site}: sproxyd {e['url']} does not answer: {e['error']}")


def _answering(
    site: str, summary: dict | None, endpoints: list, supervisor: dict, supervisor_site: str | None
) -> tuple:
    """(answering, total, details) over the components of ``site`` that can be observed."""
    answering, total, details = 0, 0, []
    if summary is not None:
        s = summary[site]
        up_servers = s["servers"]["total"] - len(s["servers"]["unhealthy"])
        up_nodes = s["nodes"]["total"] - len(s["nodes"]["unreachable"])
        answering += up_servers + up_nodes
        total += s["servers"]["total"] + s["nodes"]["total"]
        if up_servers:
            details.append(f"{up_servers} of {s['servers']['total']} servers ONLINE")
        if up_nodes:
            details.append(f"{up_nodes} of {s['nodes']['total']} nodes reachable")
    for e in endpoints:
        if e["site"] == site:
            total += 1
            if e["alive"]:
                answering += 1
                details.append(f"sproxyd {e['url']} answers")
    if supervisor_site == site:
        total += 1
        if supervisor["reachable"]:
            answering += 1
            details.append("the Supervisor (on this site) answers")
    return answering, total, details


def verdict(
    mode: str,
    sites: list,
    lost_site: str | None,
    supervisor: dict,
    supervisor_site: str | None,
    ring: dict | None,
    summary: dict | None,
    backlog: int | None,
    endpoints: list,
    canary: dict,
    copies_per_site: int,
    max_backlog: int,
    min_free_percent: float,
) -> dict:
    """Is the RING fit for the failover asked? ``summary``/``ring`` are None without a Supervisor."""
    reasons: list = []
    notes: list = []
    split = False
    surviving = [s for s in sites if s != lost_site]
    fallback = not supervisor["reachable"]

    if fallback:
        if mode == "disaster" and (supervisor_site is None or supervisor_site == lost_site):
            notes.append(f"Supervisor unreachable ({supervisor['error']}): verdict from sproxyd checks only")
        else:
            reasons.append(f"Supervisor unreachable: {supervisor['error']}")
    elif mode == "planned" and supervisor.get("status") != "Running":
        reasons.append(f"Supervisor status is {supervisor.get('status')!r}, not 'Running'")

    if mode == "planned":
        for site in sites:
            _site_whole(site, summary, endpoints, copies_per_site, reasons)
        if ring is not None and (ring["status"] != "OK" or ring["state"] != ["RUN"]):
            reasons.append(f"ring {ring['name']} is {ring['status']} {ring['state']}, not OK ['RUN']")
    else:
        for site in surviving:
            _site_whole(site, summary, endpoints, copies_per_site, reasons)
        answering, total, details = _answering(lost_site, summary, endpoints, supervisor, supervisor_site)
        if total and answering == total:
            reasons.append(
                f"{lost_site} is not lost: all {total} observed components answer ({'; '.join(details)}); "
                "run in planned mode"
            )
        elif answering:
            split = True
            reasons.append(
                f"{lost_site} is only partly unreachable ({answering} of {total} observed components answer: "
                f"{'; '.join(details)}): possible split, do not fail over blindly"
            )
        else:
            notes.append(f"{lost_site} is uniformly unreachable ({total} observed components)")

    if ring is not None:
        total_space = ring.get("diskspace_total") or 0
        if total_space:
            free = 100.0 - 100.0 * (ring.get("diskspace_used") or 0) / total_space
            if free < min_free_percent:
                reasons.append(f"ring {ring['name']} has {free:.1f}% free, below the {min_free_percent:g}% asked")
    if backlog is None:
        if not fallback:
            notes.append("the Supervisor publishes no rebuild backlog")
    elif backlog > max_backlog:
        if mode == "planned":
            reasons.append(f"rebuild backlog of {backlog} (at most {max_backlog} allowed)")
        else:
            notes.append(f"rebuild backlog of {backlog} (expected while {lost_site} is lost)")

    if canary.get("performed") and not canary.get("passed"):
        reasons.append(f"canary through {canary.get('site')} failed: {canary.get('error')}")
    elif not canary.get("performed"):
        notes.append(f"canary not run: {canary.get('skipped_reason')}")

    return {
        "mode": mode,
        "ok": not reasons,
        "lost_site": lost_site,
        "surviving_sites": surviving,
        "split_suspected": split,
        "sproxyd_only": fallback,
        "reasons": reasons,
        "notes": notes,
    }
