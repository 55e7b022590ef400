"""Real BIND named with `internal` and `external` views, selected by TSIG key.

An unsigned query matches no view and is refused. Each view has its own zone file for the
example domain (BIND rejects one writable file shared by two views).
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

from lab.services import Service

if TYPE_CHECKING:
    from lab.core import Host, Lab

VIEWS = ("internal", "external")
ALGORITHM = "hmac-sha256"


def tsig_secret(lab: "Lab", view: str) -> str:
    """The view's base64 TSIG secret (random, made at `lab up`)."""
    return lab.secret(f"tsig_{view}")


class Named(Service):
    name = "named"
    port = 53

    def zone_text(self, lab: "Lab", view: str) -> str:
        domain = lab.topology["domain"]
        active = lab.topology["active_site"]
        dns_host = lab.hosts["dns"]

        def addr(h: "Host") -> str:
            return h.address if view == "internal" else (h.public_address or h.address)

        mta = lab.hosts[f"{active}-mta1"]
        proxy = lab.hosts[f"{active}-proxy1"]
        lines = [
            "$TTL 300",
            f"@ IN SOA ns1.{domain}. hostmaster.{domain}. 1 3600 600 86400 300",
            f"@ IN NS ns1.{domain}.",
            f"ns1 IN A {dns_host.address}",
            f"@ IN MX 10 mail.{domain}.",
            f"mail IN A {addr(mta)}",
            f"smtp IN A {addr(mta)}",
            f"webmail IN A {addr(proxy)}",
            f"imap IN A {addr(proxy)}",
        ]
        if view == "internal":
            # The mailbox service names follow the active site (mbox1 -> <active>-mbox1).
            for h in lab.hosts_with("mailbox", active):
                lines.append(f"{h.name.split('-', 1)[1]} IN A {h.address}")
            for h in lab.hosts.values():
                if h.site != "core":
                    lines.append(f"{h.name} IN A {h.address}")
        else:
            for h in lab.hosts.values():
                if h.public_address and ("mta" in h.roles or "proxy" in h.roles):
                    lines.append(f"{h.name} IN A {h.public_address}")
        return "\n".join(lines) + "\n"

    def write_zones(self, lab: "Lab", host: "Host") -> None:
        zdir = host.dir / "named"
        domain = lab.topology["domain"]
        for view in VIEWS:
            vdir = zdir / view
            if vdir.exists():
                shutil.rmtree(vdir)  # journals included: a zone file with a stale .jnl fails to load
            vdir.mkdir(parents=True)
            (vdir / f"{domain}.zone").write_text(self.zone_text(lab, view))

    def prepare(self, lab: "Lab", host: "Host") -> None:
        zdir = host.dir / "named"
        zdir.mkdir(parents=True, exist_ok=True)
        domain = lab.topology["domain"]
        rndc = tsig_secret(lab, "rndc")
        keys = "\n".join(
            f'key "k-{v}" {{ algorithm {ALGORITHM}; secret "{tsig_secret(lab, v)}"; }};' for v in VIEWS
        )
        views = "\n".join(
            f"""view "{v}" {{
    match-clients {{ key k-{v}; }};
    zone "{domain}" {{
        type primary;
        file "{zdir / v / (domain + '.zone')}";
        allow-update {{ key k-{v}; }};
    }};
}};"""
            for v in VIEWS
        )
        (zdir / "named.conf").write_text(
            f"""// lab name server: split horizon by TSIG key; unsigned queries match no view.
options {{
    directory "{zdir}";
    pid-file none;
    listen-on port 53 {{ {host.address}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
    session-keyfile "{zdir}/session.key";
    managed-keys-directory "{zdir}";
}};
key "rndc-key" {{ algorithm {ALGORITHM}; secret "{rndc}"; }};
controls {{ inet {host.address} port 953 allow {{ any; }} keys {{ rndc-key; }}; }};
{keys}
{views}
"""
        )
        (zdir / "rndc.conf").write_text(
            f'key "rndc-key" {{ algorithm {ALGORITHM}; secret "{rndc}"; }};\n'
            f'options {{ default-key "rndc-key"; default-server {host.address}; default-port 953; }};\n'
        )
        self.write_zones(lab, host)
        proc = host.run(["named-checkconf", str(zdir / "named.conf")], check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"named.conf is invalid: {proc.stdout}{proc.stderr}")

    def start(self, lab: "Lab", host: "Host") -> None:
        host.spawn(["/usr/sbin/named", "-f", "-4", "-c", str(host.dir / "named" / "named.conf")], self.name)
        host.wait_port(53, "named")

    def reset(self, lab: "Lab", host: "Host") -> None:
        # Stop, drop zones and journals, write the initial zones, start: never edit a zone
        # file under a live journal.
        self.stop(lab, host)
        self.write_zones(lab, host)
        self.start(lab, host)

    def inventory_vars(self, lab: "Lab", host: "Host") -> dict[str, Any]:
        return {}

    @staticmethod
    def views(lab: "Lab") -> dict[str, Any]:
        host = lab.hosts["dns"]
        return {
            v: {
                "name": v,
                "server": host.address,
                "port": 53,
                "zone": lab.topology["domain"],
                "key_name": f"k-{v}",
                "key_algorithm": ALGORITHM,
                "key_secret": tsig_secret(lab, v),
            }
            for v in VIEWS
        }
