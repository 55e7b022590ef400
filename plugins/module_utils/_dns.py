# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DNS client for split-horizon zones updated with RFC 2136, signed with TSIG.

A zone served in two views is two zones: every read and every update goes to one view, and
the TSIG key is what selects the view on the server. So a view here is (server, port, zone,
TSIG key), and :class:`DnsClient` talks to exactly one of them. Everything it sends is
signed, queries included (the lab's named refuses unsigned queries, and an unsigned query
would be answered from whichever view matches the source address, not the one we mean).

Errors of every kind are raised as :class:`DnsError`, whose message names the view and says
what an operator should look at; nothing here calls ``fail_json``.
"""

from __future__ import annotations

import base64
import binascii
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.tsig
    import dns.update
except ImportError:
    HAS_DNSPYTHON = False
    DNSPYTHON_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_DNSPYTHON = True
    DNSPYTHON_IMPORT_ERROR = None


RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT")
TSIG_ALGORITHMS = (
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
    "hmac-sha224",
    "hmac-sha1",
    "hmac-md5",
)
# A TXT character-string holds at most 255 octets; longer texts are split, as BIND does.
_TXT_CHUNK = 255


class DnsError(Exception):
    """Any failure talking to a DNS view, or invalid input for one.

    ``view`` names the view concerned (None for input errors that concern no view);
    ``kind`` is a short machine-readable category: ``input``, ``unreachable``, ``timeout``,
    ``tsig``, ``refused``, ``zone``, ``update``, ``verify``, ``protocol``.
    """

    def __init__(self, message: str, view: str | None = None, kind: str = "error") -> None:
        self.view = view
        self.kind = kind
        self.detail = message
        super().__init__(f"view '{view}': {message}" if view else message)


def dns_argument_spec() -> dict:
    """The connection options shared by the modules that talk to DNS views."""
    return {
        "views": {
            "type": "list",
            "elements": "dict",
            "required": True,
            "options": {
                "name": {"type": "str"},
                "server": {"type": "str", "required": True},
                "port": {"type": "int", "default": 53},
                "zone": {"type": "str", "required": True},
                "key_name": {"type": "str", "required": True, "no_log": False},
                "key_algorithm": {"type": "str", "default": "hmac-sha256", "choices": list(TSIG_ALGORITHMS)},
                "key_secret": {"type": "str", "required": True, "no_log": True},
                "protocol": {"type": "str", "default": "tcp", "choices": ["tcp", "udp"]},
            },
        },
        "dns_timeout": {"type": "float", "default": 10.0},
    }


@dataclass(frozen=True)
class View:
    """One view of one server, reached with one TSIG key."""

    name: str
    server: str
    port: int
    zone: str
    key_name: str
    key_algorithm: str
    key_secret: str = field(repr=False)
    protocol: str = "tcp"

    @classmethod
    def from_params(cls, params: dict) -> View:
        """Build a View from one element of the ``views`` option, validating it."""
        key_name = params["key_name"]
        label = params.get("name") or key_name
        secret = params["key_secret"]
        try:
            decoded = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raise DnsError(
                f"key_secret of TSIG key '{key_name}' is not valid base64 (it is the 'secret' "
                "string of the key statement in named.conf)",
                view=label,
                kind="input",
            ) from None
        if not decoded:
            raise DnsError(f"key_secret of TSIG key '{key_name}' is empty", view=label, kind="input")
        port = params.get("port", 53)
        if not 0 < port < 65536:
            raise DnsError(f"port {port} is not a valid port", view=label, kind="input")
        try:
            zone = dns.name.from_text(params["zone"]).to_text()
            dns.name.from_text(key_name)
        except dns.exception.DNSException as exc:
            raise DnsError(f"invalid zone or key name: {exc}", view=label, kind="input") from None
        return cls(
            name=label,
            server=params["server"],
            port=port,
            zone=zone,
            key_name=key_name,
            key_algorithm=params.get("key_algorithm") or "hmac-sha256",
            key_secret=secret,
            protocol=params.get("protocol") or "tcp",
        )

    @property
    def where(self) -> str:
        return f"{self.server} port {self.port} ({self.protocol.upper()})"


def check_distinct_views(views: list) -> None:
    """Refuse two entries that would reach the same view twice.

    The key selects the view: the same server, zone and key name in two entries is the same
    view, so the update meant for the other view would never be made.
    """
    seen: dict = {}
    for view in views:
        ident = (view.server, view.port, dns.name.from_text(view.key_name), dns.name.from_text(view.zone))
        if ident in seen:
            raise DnsError(
                f"views '{seen[ident]}' and '{view.name}' use the same server, zone and TSIG key "
                f"'{view.key_name}', so both would reach the same view; each view needs its own key",
                kind="input",
            )
        seen[ident] = view.name
    names = [view.name for view in views]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DnsError(f"view names must be unique, repeated: {', '.join(duplicates)}", kind="input")


# --- pure functions: names, values, record sets -------------------------------------------


def record_fqdn(record: str, zone: str) -> str:
    """The absolute owner name of ``record`` in ``zone``.

    ``@`` or an empty string is the zone apex; a name ending with a dot is absolute; a name
    that already ends with the zone name is taken as written; anything else is relative to
    the zone, as in a zone file. The result must lie inside the zone.
    """
    origin = dns.name.from_text(zone)
    text = record.strip()
    if text in ("", "@"):
        return origin.to_text()
    try:
        if text.endswith("."):
            name = dns.name.from_text(text)
        else:
            as_absolute = dns.name.from_text(text)
            name = as_absolute if as_absolute.is_subdomain(origin) else dns.name.from_text(text, origin=origin)
    except dns.exception.DNSException as exc:
        raise DnsError(f"record name '{record}' is not a valid DNS name: {exc}", kind="input") from None
    if not name.is_subdomain(origin):
        raise DnsError(f"record '{record}' is not inside zone '{origin.to_text()}'", kind="input")
    return name.to_text()


def _quote_txt(value: str) -> str:
    """Quote a TXT value given as plain text, in strings of at most 255 octets each."""
    if value.startswith('"'):
        return value  # already in zone-file syntax, possibly several strings
    chunks = []
    current = ""
    for char in value:
        if len((current + char).encode("utf-8")) > _TXT_CHUNK:
            chunks.append(current)
            current = ""
        current += char
    chunks.append(current)
    quoted = []
    for chunk in chunks:
        escaped = chunk.replace("\\", "\\\\").replace('"', '\\"')
        quoted.append(f'"{escaped}"')
    return " ".join(quoted)


def _parse_rdata(rdtype: str, value: str) -> Any:
    # Names inside values are absolute (origin root, not relativized back to it).
    return dns.rdata.from_text(
        dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), value, origin=dns.name.root, relativize=False
    )


def in_zone_targets(rdtype: str, values: tuple, zone: str) -> list:
    """The MX exchanges among ``values`` that lie inside ``zone``.

    BIND refuses an update adding an MX whose in-zone exchange has no address record
    (check-integrity), so these are checked before any view is changed.
    """
    if rdtype != "MX":
        return []
    origin = dns.name.from_text(zone)
    targets = []
    for value in values:
        exchange = _parse_rdata(rdtype, value).exchange
        if exchange.is_subdomain(origin):
            targets.append(exchange.to_text())
    return sorted(set(targets))


def normalize_values(rdtype: str, values: list) -> tuple:
    """Canonical, sorted, de-duplicated text of ``values`` for ``rdtype``.

    Host names inside values (CNAME target, MX exchange) are fully qualified: a trailing dot
    is optional. TXT values are plain text unless they start with a double quote.
    The canonical text is what dnspython prints for the parsed record, so values read back
    from a server compare equal to the same values given in any spelling.
    """
    rdtype = rdtype.upper()
    if rdtype not in RECORD_TYPES:
        raise DnsError(f"record type {rdtype} is not supported (choose from {', '.join(RECORD_TYPES)})", kind="input")
    texts = []
    for raw in values:
        value = str(raw).strip()
        if rdtype == "TXT":
            value = _quote_txt(value)
        elif not value:
            raise DnsError(f"an empty value is not a valid {rdtype} record", kind="input")
        try:
            rdata = _parse_rdata(rdtype, value)
        except (dns.exception.DNSException, ValueError) as exc:
            raise DnsError(f"'{raw}' is not a valid {rdtype} value: {exc}", kind="input") from None
        texts.append(rdata.to_text())
    canonical = tuple(sorted(set(texts)))
    if rdtype == "CNAME" and len(canonical) > 1:
        raise DnsError(f"a CNAME record set holds exactly one value, got {len(canonical)}", kind="input")
    return canonical


@dataclass(frozen=True)
class RecordSet:
    """An RRset as compared and shown: TTL and canonical values (sorted)."""

    ttl: int
    values: tuple

    def to_dict(self) -> dict:
        return {"ttl": self.ttl, "values": list(self.values)}

    def zone_lines(self, fqdn: str, rdtype: str) -> str:
        return "".join(f"{fqdn} {self.ttl} IN {rdtype} {value}\n" for value in self.values)


def rrset_action(current: RecordSet | None, desired: RecordSet | None) -> str | None:
    """What to send to go from ``current`` to ``desired``: 'replace', 'delete' or None."""
    if desired is None:
        return "delete" if current is not None else None
    if current == desired:
        return None
    return "replace"


def rrset_diff(view: str, fqdn: str, rdtype: str, current: RecordSet | None, desired: RecordSet | None) -> dict:
    """One Ansible diff entry (zone-file lines before and after) for one view."""
    header = f"{fqdn} {rdtype} (view {view})"
    return {
        "before_header": header,
        "after_header": header,
        "before": current.zone_lines(fqdn, rdtype) if current else "",
        "after": desired.zone_lines(fqdn, rdtype) if desired else "",
    }


def describe(rrset: RecordSet | None) -> str:
    """A one-line description of an RRset for messages."""
    if rrset is None:
        return "no record"
    return f"TTL {rrset.ttl} [{', '.join(rrset.values)}]"


# --- the client ---------------------------------------------------------------------------


def send_message(message: Any, view: View, timeout: float) -> Any:
    """Send one message to the view's server and return the (TSIG-verified) response."""
    if view.protocol == "udp":
        return dns.query.udp(message, view.server, port=view.port, timeout=timeout)
    return dns.query.tcp(message, view.server, port=view.port, timeout=timeout)


class DnsClient:
    """Signed queries and RFC 2136 updates to one view of one server.

    ``transport`` sends a message and returns the response; it is injected so unit tests can
    script the server's answers.
    """

    def __init__(
        self,
        view: View,
        timeout: float = 10.0,
        transport: Callable[[Any, View, float], Any] | None = None,
    ) -> None:
        self.view = view
        self.timeout = timeout
        self._transport = transport or send_message
        self._keyname = dns.name.from_text(view.key_name)
        self._keyring = {self._keyname: dns.tsig.Key(view.key_name, view.key_secret, view.key_algorithm)}

    def _error(self, message: str, kind: str) -> DnsError:
        return DnsError(message, view=self.view.name, kind=kind)

    def _exchange(self, message: Any, what: str) -> Any:
        view = self.view
        key = f"TSIG key '{view.key_name}' ({view.key_algorithm})"
        try:
            return self._transport(message, view, self.timeout)
        except dns.tsig.PeerBadKey:
            # BIND answers BADKEY (not BADSIG) for a wrong secret too when views match on
            # keys: a signature that does not verify selects no view.
            raise self._error(
                f"{what}: {view.where} rejected {key} (BADKEY): the server has no key with this "
                "name, algorithm and secret for any view; check key_name, key_algorithm and key_secret",
                "tsig",
            ) from None
        except dns.tsig.PeerBadSignature:
            raise self._error(
                f"{what}: {view.where} rejected the signature made with {key} (BADSIG): "
                "the secret or algorithm does not match the server's",
                "tsig",
            ) from None
        except dns.tsig.PeerBadTime:
            raise self._error(
                f"{what}: {view.where} rejected {key} (BADTIME): the clocks of this machine and "
                "of the server differ by more than the allowed fudge",
                "tsig",
            ) from None
        except (dns.tsig.BadSignature, dns.tsig.BadTime, dns.message.UnknownTSIGKey, dns.tsig.PeerError) as exc:
            raise self._error(
                f"{what}: the answer of {view.where} failed TSIG verification with {key}: {exc}", "tsig"
            ) from None
        except dns.exception.Timeout:
            raise self._error(
                f"{what}: no answer from DNS server {view.where} within {self.timeout:g} s; "
                "is the server running and reachable?",
                "timeout",
            ) from None
        except ConnectionRefusedError:
            raise self._error(
                f"{what}: DNS server {view.where} is unreachable: connection refused (nothing listens there)",
                "unreachable",
            ) from None
        except OSError as exc:
            raise self._error(
                f"{what}: DNS server {view.where} is unreachable: {exc.strerror or exc}", "unreachable"
            ) from None
        except dns.exception.FormError as exc:
            raise self._error(f"{what}: malformed or unsigned answer from {view.where}: {exc}", "protocol") from None
        except dns.exception.DNSException as exc:
            raise self._error(f"{what}: {view.where} failed: {exc}", "protocol") from None

    def _query(self, name: str, rdtype: str) -> Any:
        query = dns.message.make_query(name, rdtype)
        query.flags &= ~dns.flags.RD  # an authoritative question, never a recursive one
        query.use_tsig(self._keyring, keyname=self._keyname)
        return self._exchange(query, f"query {name} {rdtype}")

    def check_zone(self) -> None:
        """Make sure the view serves the zone (an authoritative SOA at the zone name)."""
        view = self.view
        response = self._query(view.zone, "SOA")
        rcode = response.rcode()
        if rcode == dns.rcode.REFUSED:
            raise self._error(
                f"{view.where} refused a query for zone '{view.zone}' signed with TSIG key "
                f"'{view.key_name}': the view this key selects does not serve the zone "
                "(or no view accepts this key)",
                "zone",
            )
        if rcode != dns.rcode.NOERROR:
            raise self._error(
                f"{view.where} answered {dns.rcode.to_text(rcode)} to the SOA query for zone '{view.zone}'",
                "zone",
            )
        origin = dns.name.from_text(view.zone)
        soa = [r for r in response.answer if r.rdtype == dns.rdatatype.SOA and r.name == origin]
        if not soa or not response.flags & dns.flags.AA:
            hint = ""
            for rrset in response.authority:
                if rrset.rdtype == dns.rdatatype.SOA:
                    hint = f" (the enclosing zone there is '{rrset.name.to_text()}')"
            raise self._error(
                f"'{view.zone}' is not a zone served with authority by {view.where} in this view{hint}",
                "zone",
            )

    def read_rrset(self, fqdn: str, rdtype: str) -> RecordSet | None:
        """The RRset of ``rdtype`` at ``fqdn`` in this view, or None if there is none."""
        response = self._query(fqdn, rdtype)
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return None
        if rcode != dns.rcode.NOERROR:
            raise self._error(
                f"{self.view.where} answered {dns.rcode.to_text(rcode)} to the query {fqdn} {rdtype}",
                "refused" if rcode == dns.rcode.REFUSED else "protocol",
            )
        name = dns.name.from_text(fqdn)
        wanted = dns.rdatatype.from_text(rdtype)
        for rrset in response.answer:
            if rrset.name == name and rrset.rdtype == wanted and rrset.rdclass == dns.rdataclass.IN:
                return RecordSet(ttl=rrset.ttl, values=tuple(sorted({rd.to_text() for rd in rrset})))
        return None

    def has_address(self, fqdn: str) -> bool:
        """Whether ``fqdn`` has an A or AAAA record in this view."""
        return any(self.read_rrset(fqdn, rdtype) is not None for rdtype in ("A", "AAAA"))

    def find_cname(self, fqdn: str) -> RecordSet | None:
        """The CNAME at ``fqdn``, if any: no other data can be added next to it."""
        return self.read_rrset(fqdn, "CNAME")

    def update(self, fqdn: str, rdtype: str, desired: RecordSet | None) -> None:
        """Replace (or, with ``desired`` None, delete) the RRset in one signed update."""
        view = self.view
        message = dns.update.UpdateMessage(
            view.zone, keyring=self._keyring, keyname=self._keyname, keyalgorithm=view.key_algorithm
        )
        name = dns.name.from_text(fqdn)
        if desired is None:
            message.delete(name, rdtype)
        else:
            rdatas = [_parse_rdata(rdtype, value) for value in desired.values]
            message.replace(name, desired.ttl, *rdatas)
        response = self._exchange(message, f"update of {fqdn} {rdtype} in zone '{view.zone}'")
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        if rcode == dns.rcode.REFUSED:
            raise self._error(
                f"{view.where} refused the update of zone '{view.zone}' signed with TSIG key "
                f"'{view.key_name}': either the key may not update this zone in its view "
                "(allow-update / update-policy), or the server's integrity checks rejected the "
                "records (the server's log says which)",
                "refused",
            )
        if rcode == dns.rcode.NOTAUTH:
            raise self._error(
                f"{view.where} is not authoritative for zone '{view.zone}' in the view TSIG key "
                f"'{view.key_name}' selects (NOTAUTH): the zone is not served in that view",
                "zone",
            )
        raise self._error(
            f"{view.where} answered {dns.rcode.to_text(rcode)} to the update of {fqdn} {rdtype} in zone '{view.zone}'",
            "update",
        )
