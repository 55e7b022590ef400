# Copyright: zimbra_geo maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenLDAP client for the zimbra_geo collection.

One client class (:class:`LdapClient`, over ``ldap3``) raising one error type
(:class:`LdapError`), plus the pure functions the modules are built from:

* contextCSN parsing and the skew-free lag table (:func:`parse_csn`, :func:`lag_table`,
  :func:`replication_verdict`);
* the multi-provider configuration of one master on ``cn=config`` (:func:`read_mmr_state`,
  :func:`desired_agreements`, :func:`plan_mmr`, :func:`apply_mmr`);
* the canary and the entry-level audit (:func:`run_canary`, :func:`audit_masters`).

Nothing here calls ``fail_json``: the modules catch :class:`LdapError` once.
"""

from __future__ import annotations

import base64
import calendar
import math
import os
import shlex
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

try:
    import ldap3
    from ldap3.core import exceptions as ldap3_exceptions
    from ldap3.utils.ciDict import CaseInsensitiveDict

    HAS_LDAP3 = True
    LDAP3_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only without ldap3
    HAS_LDAP3 = False
    LDAP3_IMPORT_ERROR = exc


class LdapError(Exception):
    """Every failure of this backend: connection, TLS, bind, operation or bad input."""

    def __init__(self, message: str, uri: str | None = None, reason: str = "error") -> None:
        self.uri = uri
        self.reason = reason
        super().__init__(f"{uri}: {message}" if uri else message)


def ldap_argument_spec() -> dict[str, Any]:
    """Connection options shared by every LDAP module (doc fragment ``mailops.zimbra_geo.ldap``)."""
    return {
        "bind_method": {"type": "str", "default": "simple", "choices": ["simple", "sasl_external"]},
        "bind_dn": {"type": "str"},
        "bind_pw": {"type": "str", "no_log": True},
        "start_tls": {"type": "bool", "default": True},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "connect_timeout": {"type": "float", "default": 5.0},
        "timeout": {"type": "float", "default": 30.0},
    }


CONNECTION_OPTIONS = tuple(ldap_argument_spec())


def connection_params(params: dict[str, Any]) -> dict[str, Any]:
    """The subset of module parameters that :class:`LdapClient` takes."""
    return {name: params.get(name) for name in CONNECTION_OPTIONS}


# --------------------------------------------------------------------------------------
# contextCSN, lag and verdict (pure)
# --------------------------------------------------------------------------------------


class Csn:
    """One change sequence number: ``YYYYmmddHHMMSS.uuuuuuZ#count#sid#mod`` (hex fields)."""

    __slots__ = ("count", "mod", "raw", "sid", "time")

    def __init__(self, raw: str, time_: float, count: int, sid: int, mod: int) -> None:
        self.raw = raw
        self.time = time_
        self.count = count
        self.sid = sid
        self.mod = mod

    def key(self) -> tuple[float, int, int]:
        return (self.time, self.count, self.mod)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Csn) and self.key() == other.key() and self.sid == other.sid

    def __lt__(self, other: Csn) -> bool:
        return self.key() < other.key()

    def __hash__(self) -> int:
        return hash((self.key(), self.sid))

    def __repr__(self) -> str:
        return f"Csn({self.raw!r})"


def parse_csn(value: str) -> Csn:
    """Parse a CSN; timestamps become float seconds since the epoch (never string arithmetic)."""
    try:
        stamp, count, sid, mod = value.strip().split("#")
        if not stamp.endswith("Z"):
            raise ValueError("no Z")
        whole, _dot, frac = stamp[:-1].partition(".")
        if len(whole) != 14 or not whole.isdigit():
            raise ValueError("bad timestamp")
        seconds = calendar.timegm(
            (int(whole[0:4]), int(whole[4:6]), int(whole[6:8]),
             int(whole[8:10]), int(whole[10:12]), int(whole[12:14]), 0, 0, 0)
        )
        micro = int(frac) / (10 ** len(frac)) if frac else 0.0
        return Csn(value.strip(), seconds + micro, int(count, 16), int(sid, 16), int(mod, 16))
    except (ValueError, TypeError) as exc:
        raise LdapError(f"not a CSN: {value!r} ({exc})", reason="bad_csn") from None


def csn_by_sid(values: Iterable[str]) -> dict[int, Csn]:
    """The newest CSN per server ID of a contextCSN attribute; SID 000 is ignored.

    SID 000 is what a server without ``olcServerID`` stamps: it names no master, and
    comparing it across masters would compare unrelated servers.
    """
    result: dict[int, Csn] = {}
    for value in values:
        csn = parse_csn(value)
        if csn.sid == 0:
            continue
        if csn.sid not in result or result[csn.sid] < csn:
            result[csn.sid] = csn
    return result


def format_sid(sid: int) -> str:
    """SIDs as slapd writes them in CSNs: three lower-case hex digits."""
    return f"{sid:03x}"


def lag_table(csns: dict[str, dict[int, Csn] | None]) -> dict[int, dict[str, Any]]:
    """Lag of every reachable master for every server ID, in seconds.

    ``csns`` maps a master name to its ``{sid: Csn}`` (``None`` when unreachable).
    Lag of master X for SID s = newest CSN for s on any reachable master − X's CSN for s.
    Both timestamps were stamped by the same server (SID s), so clock skew between masters
    cancels out. A master without any CSN for s has an unknown lag (``None``).
    """
    table: dict[int, dict[str, Any]] = {}
    sids = sorted({sid for per in csns.values() if per for sid in per})
    for sid in sids:
        newest = max(per[sid] for per in csns.values() if per and sid in per)
        lags: dict[str, float | None] = {}
        for name, per in csns.items():
            if per is None:
                continue
            if sid in per:
                lags[name] = round(max(0.0, newest.time - per[sid].time), 6)
            else:
                lags[name] = None
        table[sid] = {"newest": newest, "lag": lags}
    return table


def replication_verdict(
    masters: list[dict[str, Any]],
    table: dict[int, dict[str, Any]],
    max_lag: float,
) -> tuple[bool, list[str]]:
    """Healthy only if every master answered and every known lag is within ``max_lag``.

    A down master is always a problem of its own: its absence can never make the others
    look in sync (Zimbra's zmreplchk compares against the first master only).
    """
    problems: list[str] = []
    for master in masters:
        if not master["reachable"]:
            problems.append(f"{master['name']} is down: {master['error']}")
    if not any(m["reachable"] for m in masters):
        problems.append("no master answered")
    for sid, row in sorted(table.items()):
        for name, lag in sorted(row["lag"].items()):
            if lag is None:
                problems.append(
                    f"{name} has no change of server ID {format_sid(sid)} (newest {row['newest'].raw})"
                )
            elif lag > max_lag:
                problems.append(
                    f"{name} lags {lag:.3f} s behind server ID {format_sid(sid)} (max_lag {max_lag} s)"
                )
    return (not problems, problems)


# --------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "ldap"


class LdapClient:
    """One connection to one LDAP server, bound and (for ldap://) StartTLS-protected."""

    def __init__(
        self,
        uri: str,
        bind_method: str = "simple",
        bind_dn: str | None = None,
        bind_pw: str | None = None,
        start_tls: bool = True,
        validate_certs: bool = True,
        ca_path: str | None = None,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
    ) -> None:
        if not HAS_LDAP3:  # pragma: no cover
            raise LdapError("the ldap3 Python library is required", reason="missing_library")
        self.uri = uri
        self.bind_method = bind_method
        self.bind_dn = bind_dn
        self.bind_pw = bind_pw
        self.start_tls = start_tls
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.conn: Any = None
        if bind_method == "simple" and not (bind_dn and bind_pw is not None):
            raise LdapError("bind_method simple needs bind_dn and bind_pw", uri, "bad_input")

    # -- connection -------------------------------------------------------------------
    def _tls(self) -> Any:
        if not self.validate_certs:
            return ldap3.Tls(validate=ssl.CERT_NONE)
        return ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.ca_path)

    def open(self) -> LdapClient:
        scheme = _scheme(self.uri)
        if scheme not in ("ldap", "ldaps", "ldapi"):
            raise LdapError(f"unsupported URI scheme {scheme!r}", self.uri, "bad_input")
        try:
            tls = self._tls() if scheme != "ldapi" else None
        except ldap3_exceptions.LDAPException as exc:
            raise LdapError(f"TLS settings: {_first_arg(exc)} ({self.ca_path})", self.uri, "bad_input") from None
        try:
            server = ldap3.Server(
                self.uri.rstrip("/") if scheme != "ldapi" else self.uri,
                get_info=ldap3.NONE,
                tls=tls,
                connect_timeout=self.connect_timeout,
            )
        except ldap3_exceptions.LDAPException as exc:
            raise LdapError(f"bad URI: {_first_arg(exc)}", self.uri, "bad_input") from None
        if self.bind_method == "sasl_external":
            kwargs: dict[str, Any] = {
                "authentication": ldap3.SASL, "sasl_mechanism": ldap3.EXTERNAL, "sasl_credentials": ""
            }
        else:
            kwargs = {"authentication": ldap3.SIMPLE, "user": self.bind_dn, "password": self.bind_pw}
        try:
            # ldap3 packs receive_timeout into SO_RCVTIMEO: whole seconds only.
            conn = ldap3.Connection(
                server, raise_exceptions=True, receive_timeout=max(1, math.ceil(self.timeout)),
                **kwargs,
            )
            conn.open()
            if scheme == "ldap" and self.start_tls:
                conn.start_tls()
            conn.bind()
        except ldap3_exceptions.LDAPInvalidCredentialsResult:
            who = self.bind_dn or "SASL EXTERNAL"
            raise LdapError(f"invalid credentials for {who}", self.uri, "invalid_credentials") from None
        except ldap3_exceptions.LDAPStartTLSError as exc:
            raise LdapError(f"TLS failed (certificate not trusted, or not issued for this name): "
                            f"{_first_arg(exc)}", self.uri, "tls") from None
        except ldap3_exceptions.LDAPSocketOpenError as exc:
            text = _first_arg(exc)
            reason = "tls" if "certificate" in text.lower() or "ssl" in text.lower() else "unreachable"
            raise LdapError(f"cannot connect: {text}", self.uri, reason) from None
        except ldap3_exceptions.LDAPException as exc:
            raise LdapError(f"cannot connect: {_first_arg(exc)}", self.uri, "unreachable") from None
        self.conn = conn
        return self

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.unbind()
            except Exception:
                pass
            self.conn = None

    def __enter__(self) -> LdapClient:
        return self.open() if self.conn is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- operations -------------------------------------------------------------------
    def _call(self, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.conn is None:
            self.open()
        try:
            return func(*args, **kwargs)
        except ldap3_exceptions.LDAPNoSuchObjectResult:
            raise
        except ldap3_exceptions.LDAPOperationResult as exc:
            raise LdapError(f"{what} refused: {exc.description} {exc.message or ''}".rstrip(),
                            self.uri, exc.description or "refused") from None
        except ldap3_exceptions.LDAPException as exc:
            raise LdapError(f"{what} failed: {_first_arg(exc)}", self.uri, "unreachable") from None

    def search(
        self,
        base: str,
        search_filter: str = "(objectClass=*)",
        scope: str = "SUBTREE",
        attributes: list[str] | None = None,
    ) -> list[tuple[str, dict[str, list[str]]]]:
        """Entries as ``(dn, {attribute: [values]})``; a missing base gives ``[]``."""
        def run() -> list[tuple[str, dict[str, list[str]]]]:
            self.conn.search(base, search_filter, search_scope=scope,
                             attributes=attributes or ["*"])
            return [
                (e["dn"], _ci_dict((k, _as_list(v)) for k, v in e["attributes"].items()))
                for e in self.conn.response if e.get("type") == "searchResEntry"
            ]
        try:
            return self._call(f"search {base}", run)
        except ldap3_exceptions.LDAPNoSuchObjectResult:
            return []

    def read(self, dn: str, attributes: list[str] | None = None) -> dict[str, list[str]] | None:
        found = self.search(dn, scope="BASE", attributes=attributes)
        return found[0][1] if found else None

    def exists(self, dn: str) -> bool:
        return bool(self.search(dn, scope="BASE", attributes=["1.1"]))

    def add(self, dn: str, attributes: dict[str, Any]) -> None:
        self._call(f"add {dn}", self.conn.add, dn, attributes=attributes)

    def modify(self, dn: str, changes: dict[str, list[tuple[str, list[str]]]]) -> None:
        """``changes`` as for ldap3: ``{attr: [(MODIFY_REPLACE, [values])]}``; one operation."""
        self._call(f"modify {dn}", self.conn.modify, dn, changes)

    def delete(self, dn: str) -> None:
        try:
            self._call(f"delete {dn}", self.conn.delete, dn)
        except ldap3_exceptions.LDAPNoSuchObjectResult:
            pass

    def paged_ids(self, base: str, page_size: int = 1000) -> dict[str, tuple[str, str]]:
        """``{entryUUID: (entryCSN, dn)}`` of every entry under ``base``, paged."""
        result: dict[str, tuple[str, str]] = {}

        def run() -> None:
            cookie: Any = True
            while cookie:
                self.conn.search(
                    base, "(objectClass=*)", search_scope=ldap3.SUBTREE,
                    attributes=["entryUUID", "entryCSN"], paged_size=page_size,
                    paged_cookie=None if cookie is True else cookie,
                )
                for e in self.conn.response:
                    if e.get("type") != "searchResEntry":
                        continue
                    attrs = e["raw_attributes"]
                    uid = attrs.get("entryUUID") or [b""]
                    csn = attrs.get("entryCSN") or [b""]
                    result[uid[0].decode()] = (csn[0].decode(), e["dn"])
                ctrl = self.conn.result.get("controls", {}).get("1.2.840.113556.1.4.319", {})
                cookie = ctrl.get("value", {}).get("cookie")

        self._call(f"search {base}", run)
        return result


def _first_arg(exc: BaseException) -> str:
    args = getattr(exc, "args", None)
    if args:
        first = args[0]
        if isinstance(first, (list, tuple)) and first:
            return "; ".join(str(x) for x in first)
        return str(first)
    return str(exc) or exc.__class__.__name__


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else str(v) for v in value]
    if value is None:
        return []
    return [value.decode() if isinstance(value, bytes) else str(value)]


def _ci_dict(items: Iterable[tuple[str, list[str]]]) -> Any:
    """Attribute names are case-insensitive (slapd answers olcSpSessionlog for olcSpSessionLog)."""
    result = CaseInsensitiveDict() if HAS_LDAP3 else {}
    for key, value in items:
        result[key] = value
    return result


def normalize_dn(dn: str) -> str:
    """Case- and space-insensitive DN comparison form (enough for suffixes and bind DNs)."""
    return ",".join(part.strip().lower() for part in dn.split(","))


def concurrently(func: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """``func`` over ``items`` in threads (one per item); results in order, errors as values."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        futures = [pool.submit(_capture, func, item) for item in items]
        return [f.result() for f in futures]


def _capture(func: Callable[[Any], Any], item: Any) -> Any:
    try:
        return func(item)
    except LdapError as exc:
        return exc


# --------------------------------------------------------------------------------------
# olcSyncrepl agreements (pure)
# --------------------------------------------------------------------------------------

# Keys this collection writes in an agreement. slapd adds its own defaults when it
# re-serialises a value (timeout=0, scope=sub, attrs="*,+", ...): those are not compared.
MANAGED_KEYS = (
    "rid", "provider", "bindmethod", "binddn", "credentials", "saslmech", "searchbase",
    "type", "retry", "keepalive", "starttls", "tls_cacert", "tls_cert", "tls_key",
    "tls_reqcert", "network-timeout", "timeout",
)
_SECRET_KEYS = ("credentials",)


def split_ordered(value: str) -> tuple[int | None, str]:
    """``{3}rid=...`` -> ``(3, 'rid=...')``: slapd's X-ORDERED index prefix."""
    if value.startswith("{"):
        index, sep, rest = value[1:].partition("}")
        if sep and index.lstrip("-").isdigit():
            return int(index), rest
    return None, value


def parse_syncrepl(value: str) -> dict[str, str]:
    """An olcSyncrepl value as ``{key: value}`` (quotes removed, index prefix dropped)."""
    text = split_ordered(value)[1]
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    result: dict[str, str] = {}
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise LdapError(f"cannot parse olcSyncrepl value ({exc})", reason="bad_config") from None
    for token in tokens:
        key, sep, val = token.partition("=")
        if sep:
            result[key.lower()] = val
    return result


def format_syncrepl(params: dict[str, str]) -> str:
    """Render an agreement, managed keys first in a stable order, quoting where needed."""
    parts = []
    ordered = [k for k in MANAGED_KEYS if k in params] + sorted(k for k in params if k not in MANAGED_KEYS)
    for key in ordered:
        val = str(params[key])
        if '"' in val or "\\" in val:
            raise LdapError(f"agreement value for {key} must not contain quotes or backslashes",
                            reason="bad_input")
        if key == "rid" or (val and not any(c in val for c in " \t,=+#")):
            parts.append(f"{key}={val}")
        else:
            parts.append(f'{key}="{val}"')
    return " ".join(parts)


def _norm_agreement_value(key: str, value: str) -> str:
    if key == "rid":
        return str(int(value))
    if key in ("binddn", "searchbase"):
        return normalize_dn(value)
    if key in ("provider",):
        return value.lower().rstrip("/")
    if key in ("bindmethod", "saslmech", "type", "starttls", "tls_reqcert"):
        return value.lower()
    if key == "retry":
        return " ".join(value.split())
    return value


def agreement_matches(current: dict[str, str], desired: dict[str, str]) -> bool:
    """Equal on every managed key; a managed key we do not set must be absent or default."""
    for key in MANAGED_KEYS:
        want = desired.get(key)
        have = current.get(key)
        if want is None:
            if have in (None, "") or (have, key) in _SLAPD_DEFAULTS:
                continue
            return False
        if have is None or _norm_agreement_value(key, have) != _norm_agreement_value(key, want):
            return False
    return True


# What slapd writes back for a key left unset (so an unset key still matches).
_SLAPD_DEFAULTS = {("0", "timeout"), ("0", "network-timeout"), ("no", "starttls")}


def mask_agreement(params: dict[str, str]) -> dict[str, str]:
    return {k: ("********" if k in _SECRET_KEYS and v else v) for k, v in params.items()}


def desired_agreements(
    server_id: int,
    masters: list[dict[str, Any]],
    suffix: str,
    replication: dict[str, Any],
) -> list[dict[str, str]]:
    """One agreement per other master, ``rid`` = that master's server ID (stable across edits)."""
    agreements = []
    for peer in sorted(masters, key=lambda m: m["server_id"]):
        if peer["server_id"] == server_id:
            continue
        uri = peer["uri"]
        params: dict[str, str] = {
            "rid": f"{peer['server_id']:03d}",
            "provider": uri,
            "searchbase": suffix,
            "type": "refreshAndPersist",
            "retry": replication.get("retry") or "1 60 10 +",
        }
        if replication.get("keepalive"):
            params["keepalive"] = replication["keepalive"]
        if replication.get("network_timeout"):
            params["network-timeout"] = str(int(replication["network_timeout"]))
        if replication.get("timeout"):
            params["timeout"] = str(int(replication["timeout"]))
        if replication.get("bind_method", "simple") == "sasl_external":
            params["bindmethod"] = "sasl"
            params["saslmech"] = "EXTERNAL"
        else:
            params["bindmethod"] = "simple"
            params["binddn"] = replication["bind_dn"]
            params["credentials"] = replication["credentials"]
        scheme = _scheme(uri)
        if scheme == "ldap" and replication.get("start_tls", True):
            params["starttls"] = "critical"
        if scheme in ("ldap", "ldaps") and (scheme == "ldaps" or replication.get("start_tls", True)):
            params["tls_reqcert"] = replication.get("tls_reqcert") or "demand"
            for opt, key in (("tls_cacert", "tls_cacert"), ("tls_cert", "tls_cert"), ("tls_key", "tls_key")):
                if replication.get(opt):
                    params[key] = replication[opt]
        agreements.append(params)
    return agreements


def validate_masters(server_id: int, masters: list[dict[str, Any]]) -> None:
    """Refuse, before any change, a set that cannot be built."""
    if not 1 <= server_id <= 999:
        raise LdapError(f"server_id must be 1..999 (it is also the agreements' rid), got {server_id}",
                        reason="bad_input")
    seen: dict[int, str] = {}
    uris: dict[str, int] = {}
    for master in masters:
        sid, uri = master["server_id"], master["uri"]
        if not 1 <= sid <= 999:
            raise LdapError(f"master {uri}: server_id must be 1..999, got {sid}", reason="bad_input")
        if sid in seen:
            raise LdapError(f"duplicate server ID {sid}: used by {seen[sid]} and {uri}",
                            reason="duplicate_server_id")
        key = uri.lower().rstrip("/")
        if key in uris:
            raise LdapError(f"master {uri} is listed twice (server IDs {uris[key]} and {sid})",
                            reason="bad_input")
        seen[sid] = uri
        uris[key] = sid
    if server_id not in seen:
        raise LdapError(f"the set of masters does not include this master (server ID {server_id})",
                        reason="not_in_set")
    if len(masters) < 2:
        raise LdapError("a multi-provider set needs at least two masters", reason="bad_input")


# --------------------------------------------------------------------------------------
# Multi-provider state of one master on cn=config
# --------------------------------------------------------------------------------------

MULTI_PROVIDER_ATTRS = ("olcMultiProvider", "olcMirrorMode")
_REPLACE = ldap3.MODIFY_REPLACE if HAS_LDAP3 else "MODIFY_REPLACE"


def parse_server_ids(values: list[str]) -> list[tuple[int, str | None]]:
    """``olcServerID`` values: ``'1'``, ``'0x1'`` or ``'1 ldap://host/'`` (index prefix allowed)."""
    result = []
    for value in values:
        text = split_ordered(value)[1]
        parts = text.split()
        if not parts:
            continue
        sid = int(parts[0], 0)
        result.append((sid, parts[1] if len(parts) > 1 else None))
    return result


def own_server_id(values: list[str], own_uri: str | None) -> int | None:
    """This server's ID: the single bare value, or the one whose URL is its own."""
    ids = parse_server_ids(values)
    bare = [sid for sid, url in ids if url is None]
    if bare:
        return bare[0]
    if own_uri:
        for sid, url in ids:
            if url and url.lower().rstrip("/") == own_uri.lower().rstrip("/"):
                return sid
    return None


def read_mmr_state(client: LdapClient, suffix: str, own_uri: str | None = None) -> dict[str, Any]:
    """Everything ldap_mmr manages on one master, read from cn=config."""
    config = client.read("cn=config", ["olcServerID"])
    if config is None:
        raise LdapError("cannot read cn=config (bind as its rootDN or over ldapi as root)",
                        client.uri, "no_access")
    modules = client.search("cn=config", "(objectClass=olcModuleList)", "LEVEL",
                            ["olcModuleLoad", "cn"])
    databases = client.search("cn=config", "(objectClass=olcDatabaseConfig)", "LEVEL",
                              ["olcSuffix", "olcSyncrepl", "olcDatabase"] + list(MULTI_PROVIDER_ATTRS))
    wanted = normalize_dn(suffix)
    database = None
    for dn, attrs in databases:
        if any(normalize_dn(s) == wanted for s in attrs.get("olcSuffix", [])):
            database = (dn, attrs)
            break
    if database is None:
        raise LdapError(f"no database with suffix {suffix} on this server", client.uri, "no_database")
    db_dn, db_attrs = database
    overlays = client.search(db_dn, "(objectClass=olcOverlayConfig)", "LEVEL",
                             ["olcOverlay", "olcSpCheckpoint", "olcSpSessionLog"])
    overlay = None
    for dn, attrs in overlays:
        if any(split_ordered(v)[1].lower() == "syncprov" for v in attrs.get("olcOverlay", [])):
            overlay = {"dn": dn,
                       "checkpoint": (attrs.get("olcSpCheckpoint") or [None])[0],
                       "sessionlog": (attrs.get("olcSpSessionLog") or [None])[0]}
            break
    loaded = any(
        "syncprov" in split_ordered(v)[1].lower()
        for _dn, attrs in modules for v in attrs.get("olcModuleLoad", [])
    )
    mp_attr = None
    mp_value = False
    for name in MULTI_PROVIDER_ATTRS:
        values = db_attrs.get(name)
        if values:
            mp_attr = name
            mp_value = values[0].upper() == "TRUE"
            break
    agreements = []
    for value in db_attrs.get("olcSyncrepl", []):
        index = split_ordered(value)[0]
        agreements.append({"index": index, "raw": value, "params": parse_syncrepl(value)})
    agreements.sort(key=lambda a: (a["index"] is None, a["index"]))
    server_ids = config.get("olcServerID", [])
    return {
        "server_id_values": server_ids,
        "server_id": own_server_id(server_ids, own_uri),
        "module_entries": [dn for dn, _attrs in modules],
        "syncprov_loaded": loaded or overlay is not None,
        "database": db_dn,
        "overlay": overlay,
        "multi_provider": mp_value,
        "multi_provider_attr": mp_attr,
        "agreements": agreements,
    }


class Operation:
    """One LDAP write of the plan: an add or a single (atomic) modify."""

    def __init__(self, description: str, kind: str, dn: str, payload: dict[str, Any]) -> None:
        self.description = description
        self.kind = kind
        self.dn = dn
        self.payload = payload

    def __repr__(self) -> str:
        return f"Operation({self.kind} {self.dn})"


def plan_mmr(
    state: dict[str, Any],
    server_id: int,
    agreements: list[dict[str, str]],
    checkpoint: str,
    sessionlog: int,
) -> list[Operation]:
    """The writes that bring ``state`` to the desired set, in the order slapd accepts.

    1. load syncprov; 2. olcServerID (before anything replicates, or changes get SID 000);
    3. the syncprov overlay; 4. agreements and multi-provider mode in ONE modify (slapd
    rejects multi-provider without agreements, and agreements alone make the DB read-only).
    """
    replace = ldap3.MODIFY_REPLACE if HAS_LDAP3 else "MODIFY_REPLACE"
    add = ldap3.MODIFY_ADD if HAS_LDAP3 else "MODIFY_ADD"
    ops: list[Operation] = []
    if not state["syncprov_loaded"]:
        if state["module_entries"]:
            ops.append(Operation("load the syncprov module", "modify", state["module_entries"][0],
                                 {"olcModuleLoad": [(add, ["syncprov"])]}))
        else:
            ops.append(Operation("load the syncprov module", "add", "cn=module,cn=config",
                                 {"objectClass": ["olcModuleList"], "cn": "module",
                                  "olcModuleLoad": ["syncprov"]}))
    if state["server_id"] != server_id or len(state["server_id_values"]) != 1:
        ops.append(Operation(f"set olcServerID to {server_id}", "modify", "cn=config",
                             {"olcServerID": [(replace, [str(server_id)])]}))
    overlay = state["overlay"]
    if overlay is None:
        ops.append(Operation("add the syncprov overlay", "add", "olcOverlay=syncprov," + state["database"],
                             {"objectClass": ["olcOverlayConfig", "olcSyncProvConfig"],
                              "olcOverlay": "syncprov", "olcSpCheckpoint": checkpoint,
                              "olcSpSessionLog": str(sessionlog)}))
    elif (" ".join((overlay["checkpoint"] or "").split()) != " ".join(checkpoint.split())
          or str(overlay["sessionlog"] or "") != str(sessionlog)):
        ops.append(Operation("set syncprov checkpoint and session log", "modify", overlay["dn"],
                             {"olcSpCheckpoint": [(replace, [checkpoint])],
                              "olcSpSessionLog": [(replace, [str(sessionlog)])]}))
    current = [a["params"] for a in state["agreements"]]
    same = len(current) == len(agreements) and all(
        any(agreement_matches(c, d) for c in current) for d in agreements
    )
    changes: dict[str, Any] = {}
    if not same:
        changes["olcSyncrepl"] = [(replace, [f"{{{i}}}{format_syncrepl(a)}" for i, a in enumerate(agreements)])]
    if not state["multi_provider"]:
        changes[state["multi_provider_attr"] or "olcMultiProvider"] = [(replace, ["TRUE"])]
    if changes:
        what = []
        if "olcSyncrepl" in changes:
            what.append(f"set {len(agreements)} replication agreements")
        if len(changes) > 1 or "olcSyncrepl" not in changes:
            what.append("turn on multi-provider mode")
        ops.append(Operation(" and ".join(what), "modify", state["database"], changes))
    return ops


def predict_state(state: dict[str, Any], server_id: int, agreements: list[dict[str, str]],
                  checkpoint: str, sessionlog: int) -> dict[str, Any]:
    """The state after :func:`plan_mmr`'s operations (what check mode reports)."""
    return {
        "server_id_values": [str(server_id)],
        "server_id": server_id,
        "module_entries": state["module_entries"] or ["cn=module,cn=config"],
        "syncprov_loaded": True,
        "database": state["database"],
        "overlay": {"dn": (state["overlay"] or {}).get("dn") or "olcOverlay=syncprov," + state["database"],
                    "checkpoint": checkpoint, "sessionlog": str(sessionlog)},
        "multi_provider": True,
        "multi_provider_attr": state["multi_provider_attr"] or "olcMultiProvider",
        "agreements": [{"index": i, "raw": f"{{{i}}}{format_syncrepl(a)}", "params": a}
                       for i, a in enumerate(agreements)],
    }


def public_state(state: dict[str, Any]) -> dict[str, Any]:
    """The state as the module reports and diffs it: secrets masked, stable order."""
    overlay = state["overlay"]
    return {
        "server_id": state["server_id"],
        "syncprov_loaded": state["syncprov_loaded"],
        "database": state["database"],
        "syncprov": None if overlay is None else {
            "checkpoint": overlay["checkpoint"], "sessionlog": overlay["sessionlog"]},
        "multi_provider": state["multi_provider"],
        "agreements": [format_syncrepl(mask_agreement(a["params"])) for a in state["agreements"]],
    }


def apply_mmr(client: LdapClient, ops: list[Operation], server_id: int) -> None:
    """Run the plan; after olcServerID is written, read it back before going on."""
    for op in ops:
        if op.kind == "add":
            client.add(op.dn, op.payload)
        else:
            try:
                client.modify(op.dn, op.payload)
            except LdapError as exc:
                # slapd 2.4 knows multi-provider mode only as olcMirrorMode.
                if "olcMultiProvider" in op.payload and "undefinedAttributeType" in str(exc):
                    payload = dict(op.payload)
                    payload["olcMirrorMode"] = payload.pop("olcMultiProvider")
                    client.modify(op.dn, payload)
                else:
                    raise
        if "olcServerID" in op.payload:
            values = (client.read("cn=config", ["olcServerID"]) or {}).get("olcServerID", [])
            if own_server_id(values, None) != server_id:
                raise LdapError(f"olcServerID reads {values} after setting it to {server_id}",
                                client.uri, "server_id_not_set")


# --------------------------------------------------------------------------------------
# Replication probes: contextCSN, canary, audit
# --------------------------------------------------------------------------------------


def read_context_csn(client: LdapClient, suffix: str) -> list[str]:
    entry = client.read(suffix, ["contextCSN"])
    if entry is None:
        raise LdapError(f"suffix entry {suffix} does not exist", client.uri, "no_suffix")
    return entry.get("contextCSN", [])


def run_canary(
    clients: dict[str, LdapClient],
    parent_dn: str,
    timeout: float,
    now: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Write a marker on each master in turn; time (ms) until every other master sees it.

    One marker entry per canary: the first master adds it, each next master rewrites its
    ``description`` with a fresh token, and each round waits until every other master
    holds that master's token. At the end the marker is deleted and its deletion awaited
    everywhere. One add and one delete (not one pair per master) matter: with plain (not
    delta) syncrepl, an add relayed late by a third master can bring back an entry deleted
    right after its creation. A final sweep deletes any marker found again, and says so.
    """
    dn = f"cn=zg-canary-{uuid.uuid4().hex[:12]},{parent_dn}"
    names = list(clients)
    rounds = []
    created_on = None
    for writer in names:
        token = uuid.uuid4().hex
        others = [n for n in names if n != writer]
        record: dict[str, Any] = {"writer": writer, "dn": dn, "propagation_ms": {}, "error": None,
                                  "complete": False, "max_ms": None}
        try:
            if created_on is None:
                clients[writer].add(dn, {"objectClass": ["device"], "cn": dn.split(",", 1)[0][3:],
                                         "description": token})
                created_on = writer
            else:
                clients[writer].modify(dn, {"description": [(_REPLACE, [token])]})
        except LdapError as exc:
            record["error"] = str(exc)
            rounds.append(record)
            continue
        record["propagation_ms"] = _wait_all(clients, others, dn, token, now(), timeout, now)
        seen = [v for v in record["propagation_ms"].values() if v is not None]
        record["complete"] = len(seen) == len(others)
        record["max_ms"] = max(seen) if seen and record["complete"] else None
        rounds.append(record)
    cleaned = created_on is None
    if created_on is not None:
        last = next((r["writer"] for r in reversed(rounds) if not r["error"]), created_on)
        try:
            clients[last].delete(dn)
            gone = _wait_all(clients, [n for n in names if n != last], dn, None, now(), timeout, now)
            cleaned = all(v is not None for v in gone.values())
        except LdapError:
            cleaned = False
    swept, clean = _sweep(clients, [dn] if created_on is not None else [], timeout, now)
    return {"ran": True, "dn": dn, "rounds": rounds,
            "complete": bool(rounds) and all(r["complete"] for r in rounds),
            "cleaned_up": cleaned and clean,
            "swept": swept,
            "max_ms": max((r["max_ms"] for r in rounds if r["max_ms"] is not None), default=None)}


def _sweep(clients: dict[str, LdapClient], dns: list[str], timeout: float,
           now: Callable[[], float]) -> tuple[list[dict[str, Any]], bool]:
    """Delete markers wherever they still are, until no master has any (or ``timeout``)."""
    swept: list[dict[str, Any]] = []
    deadline = now() + timeout
    while True:
        leftovers = []
        for dn in dns:
            holders = [n for n, client in clients.items() if _exists(client, dn)]
            if holders:
                leftovers.append((dn, holders))
        if not leftovers:
            return swept, True
        if now() > deadline:
            return swept, False
        for dn, holders in leftovers:
            swept.append({"dn": dn, "masters": holders})
            for name in holders:
                try:
                    clients[name].delete(dn)
                except LdapError:
                    pass  # gone meanwhile, or that master failed: the next pass sees it
        time.sleep(0.005)  # a poll interval, not a wait for a state


def _exists(client: LdapClient, dn: str) -> bool:
    try:
        return client.exists(dn)
    except LdapError:
        return False


def _wait_all(clients: dict[str, LdapClient], names: list[str], dn: str, token: str | None,
              start: float, timeout: float, now: Callable[[], float]) -> dict[str, float | None]:
    """Poll each master (one thread each) until ``dn`` carries ``token`` (``None``: is gone)."""
    def holds(name: str) -> bool:
        entry = clients[name].read(dn, ["description"])
        if token is None:
            return entry is None
        return entry is not None and token in entry.get("description", [])

    def watch(name: str) -> float | None:
        deadline = start + timeout
        while True:
            try:
                if holds(name):
                    return round((now() - start) * 1000.0, 3)
            except LdapError:
                return None
            if now() > deadline:
                return None
            time.sleep(0.0005)  # a poll interval, not a wait for a state

    results = concurrently(watch, names)
    return {n: (None if isinstance(results[i], LdapError) else results[i]) for i, n in enumerate(names)}


def ldapsearch_command(uri: str, conn: dict[str, Any], base: str, page_size: int,
                       password_file: str | None, binary: str = "ldapsearch") -> list[str]:
    argv = [binary, "-LLL", "-o", "ldif-wrap=no", "-H", uri,
            "-o", f"nettimeout={max(1, int(conn.get('connect_timeout') or 5))}"]
    if conn.get("bind_method") == "sasl_external":
        argv += ["-Y", "EXTERNAL"]
    else:
        argv += ["-x", "-D", conn["bind_dn"], "-y", password_file or ""]
    if _scheme(uri) == "ldap" and conn.get("start_tls", True):
        argv.append("-ZZ")
    argv += ["-b", base, "-s", "sub", "-E", f"pr={page_size}/noprompt",
             "(objectClass=*)", "entryUUID", "entryCSN"]
    return argv


def parse_ldif_ids(data: bytes) -> dict[bytes, tuple[bytes, bytes]]:
    """``{entryUUID: (entryCSN, dn line)}`` from ``ldapsearch -LLL -o ldif-wrap=no`` output.

    Stays in bytes and decodes nothing: only differences are decoded, by :func:`_text`.
    The common case (every entry has one DN, one entryUUID and one entryCSN) is three list
    comprehensions and a zip, ten times cheaper than walking entry by entry.
    """
    lines = data.split(b"\n")
    dns = [line for line in lines if line.startswith(b"dn:")]
    uuids = [line[11:] for line in lines if line.startswith(b"entryUUID: ")]
    csns = [line[10:] for line in lines if line.startswith(b"entryCSN: ")]
    if len(dns) == len(uuids) == len(csns):
        # lengths checked just above (zip's strict= needs Python 3.10, modules run on 3.8)
        return dict(zip(uuids, zip(csns, dns)))  # noqa: B905
    # Some entry lacks one of them: pair them up entry by entry (such entries are skipped).
    result: dict[bytes, tuple[bytes, bytes]] = {}
    for block in data.split(b"\n\n"):
        dn = uid = csn = b""
        for line in block.split(b"\n"):
            if line.startswith(b"entryCSN: "):
                csn = line[10:]
            elif line.startswith(b"entryUUID: "):
                uid = line[11:]
            elif line.startswith(b"dn:"):
                dn = line
        if uid:
            result[uid] = (csn, dn)
    return result


def _text(value: Any) -> str:
    """A value of the audit as text: bytes decoded, ``dn::`` (base64) lines decoded too."""
    if isinstance(value, bytes):
        if value.startswith(b"dn:: "):
            return base64.b64decode(value[5:]).decode("utf-8", "replace")
        if value.startswith(b"dn: "):
            value = value[4:]
        return value.decode("utf-8", "replace")
    return value


def fetch_ids_ldapsearch(uri: str, conn: dict[str, Any], base: str, page_size: int,
                         binary: str) -> dict[bytes, tuple[bytes, bytes]]:
    """OpenLDAP's C client streams the two attributes; Python only splits lines."""
    # Only the options given here count: no system ldap.conf, no user ldaprc.
    env = dict(os.environ, LDAPCONF=os.devnull, LDAPRC="zimbra-geo-no-ldaprc",
               LDAPTLS_REQCERT="demand" if conn.get("validate_certs", True) else "never")
    if conn.get("ca_path"):
        env["LDAPTLS_CACERT"] = conn["ca_path"]
    pw_file = None
    try:
        if conn.get("bind_method") != "sasl_external":
            fd, pw_file = tempfile.mkstemp(prefix="zg-ldap-")
            with os.fdopen(fd, "w") as handle:  # 0600: the password never shows in argv
                handle.write(conn.get("bind_pw") or "")
        argv = ldapsearch_command(uri, conn, base, page_size, pw_file, binary)
        # Output to an unlinked file, read once at the end: ldapsearch writes in small pieces,
        # and draining a pipe costs this process a poll and a read for each of them.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            # the whole dump gets 20 times the per-operation timeout
            proc = subprocess.run(argv, env=env, stdout=out, stderr=err,
                                  timeout=float(conn.get("timeout") or 30) * 20, check=False)
            out.seek(0)
            err.seek(0)
            data, stderr = out.read(), err.read().decode("utf-8", "replace").strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LdapError(f"ldapsearch failed: {exc}", uri, "unreachable") from None
    finally:
        if pw_file:
            os.unlink(pw_file)
    if proc.returncode != 0:
        raise LdapError(f"ldapsearch exited {proc.returncode}: {stderr}", uri, "unreachable")
    return parse_ldif_ids(data)


def compare_ids(per_master: dict[str, dict[Any, tuple[Any, Any]]], limit: int) -> dict[str, Any]:
    """Entries missing on some master or different between masters, counted and sampled.

    Entries are matched by entryUUID. An entry whose DN carries another entryUUID on some
    master (re-created there by hand or by a tool) is one *different* entry, not two missing.
    """
    names = list(per_master)
    # Only entries whose (entryUUID, entryCSN, DN) is not the same on every master are looked
    # at one by one; finding them is a set operation on the dicts' items, done in C.
    suspects: set = set()
    if names:
        first = per_master[names[0]].items()
        for name in names[1:]:
            suspects.update(uid for uid, _value in first ^ per_master[name].items())
    by_dn: dict[str, list[str]] = {}
    for uid in suspects:
        dn = _text(next(per_master[n][uid][1] for n in names if uid in per_master[n]))
        by_dn.setdefault(normalize_dn(dn), []).append(uid)
    missing = {n: 0 for n in names}
    different = 0
    samples: list[dict[str, Any]] = []
    for uids in by_dn.values():
        uuids: dict[str, Any] = {n: None for n in names}
        csns: dict[str, Any] = {n: None for n in names}
        dns: dict[str, str] = {}
        for uid in sorted(uids):
            for n in names:
                if uid in per_master[n] and uuids[n] is None:
                    uuids[n] = _text(uid)
                    csns[n] = _text(per_master[n][uid][0])
                    dns[n] = _text(per_master[n][uid][1])
        absent = [n for n in names if uuids[n] is None]
        present = {(uuids[n], csns[n], normalize_dn(dns[n])) for n in dns}
        if len(present) == 1 and not absent:
            continue  # the DNs differ in case or spacing only
        for n in absent:
            missing[n] += 1
        if len(present) > 1:
            different += 1
            kind = "missing_and_different" if absent else "different"
        else:
            kind = "missing"
        dn = next(dns[n] for n in names if n in dns)
        samples.append({"dn": dn, "kind": kind, "entry_uuid": uuids, "entry_csn": csns,
                        "dn_per_master": {n: dns.get(n) for n in names}})
    samples.sort(key=lambda s: s["dn"].lower())
    return {
        "entries": {n: len(per_master[n]) for n in names},
        "missing": missing,
        "different": different,
        "differences_total": len(samples),
        "differences": samples[:limit],
        "in_sync": not samples,
    }


def audit_masters(
    masters: list[dict[str, Any]],
    conn: dict[str, Any],
    base: str,
    engine: str,
    page_size: int,
    limit: int,
    ldapsearch_binary: str | None,
) -> dict[str, Any]:
    """Fetch entryUUID/entryCSN of every entry from every master concurrently, then compare."""
    started = time.monotonic()
    use = engine
    if engine == "auto":
        use = "ldapsearch" if ldapsearch_binary else "ldap3"
    if use == "ldapsearch" and not ldapsearch_binary:
        raise LdapError("audit_engine ldapsearch needs the ldapsearch program (ldap-utils)",
                        reason="missing_program")

    def fetch(master: dict[str, Any]) -> dict[str, tuple[str, str]]:
        if use == "ldapsearch":
            return fetch_ids_ldapsearch(master["uri"], conn, base, page_size, ldapsearch_binary or "")
        with LdapClient(master["uri"], **conn) as client:
            return client.paged_ids(base, page_size)

    results = concurrently(fetch, masters)
    errors = {m["name"]: str(results[i]) for i, m in enumerate(masters) if isinstance(results[i], LdapError)}
    fetched = {m["name"]: results[i] for i, m in enumerate(masters) if not isinstance(results[i], LdapError)}
    report = compare_ids(fetched, limit)
    report["engine"] = use
    report["errors"] = errors
    report["in_sync"] = report["in_sync"] and not errors
    report["seconds"] = round(time.monotonic() - started, 3)
    return report
