"""Real OpenLDAP slapd on each LDAP master host, started bare (standalone, no replication).

Only dc1-ldap1 holds the example directory; the other three have an empty database, so
building the 4-way multi-provider set is real work and its convergence is observable.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from lab.services import Service

if TYPE_CHECKING:
    from lab.core import Host, Lab

SCHEMAS = ["core", "cosine", "nis", "inetorgperson"]
SEED_USERS = 20


def ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


class Slapd(Service):
    name = "slapd"
    port = 389

    def _paths(self, host: "Host") -> tuple[Any, Any]:
        return host.dir / "slapd.d", host.dir / "slapd-data"

    def prepare(self, lab: "Lab", host: "Host") -> None:
        confdir, datadir = self._paths(host)
        for d in (confdir, datadir):
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
        suffix = lab.topology["ldap_suffix"]
        cert, key = lab.ca.issue(host.name, [host.address], [f"{host.name}.{lab.topology['domain']}", host.name])
        peercred = "gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth"
        schema_includes = "\n".join(f"include: file:///etc/ldap/schema/{s}.ldif" for s in SCHEMAS)
        config = f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: /run/slapd/slapd.pid
olcTLSCACertificateFile: {lab.ca.cert_path}
olcTLSCertificateFile: {cert}
olcTLSCertificateKeyFile: {key}
olcLogLevel: none

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schema_includes}

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: unlimited

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcRootDN: cn=config
olcRootPW: {ssha(lab.secret('ldap_config_password'))}
olcAccess: {{0}}to * by dn.exact={peercred} manage by * break

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {datadir}
olcSuffix: {suffix}
olcRootDN: cn=admin,{suffix}
olcRootPW: {ssha(lab.secret('ldap_admin_password'))}
olcDbIndex: objectClass eq
olcDbIndex: entryUUID eq
olcDbIndex: entryCSN eq
olcDbMaxSize: 1073741824
olcLimits: dn.exact="cn=admin,{suffix}" size=unlimited time=unlimited
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by dn.exact={peercred} manage by users read by * none
"""
        (host.dir / "config.ldif").write_text(config)
        subprocess.run(["slapadd", "-n0", "-F", str(confdir), "-l", str(host.dir / "config.ldif")],
                       check=True, capture_output=True)
        if host.name == self.seed_host(lab):
            (host.dir / "seed.ldif").write_text(self.seed_ldif(lab))
            subprocess.run(["slapadd", "-n1", "-F", str(confdir), "-l", str(host.dir / "seed.ldif")],
                           check=True, capture_output=True)

    @staticmethod
    def seed_host(lab: "Lab") -> str:
        return sorted(h.name for h in lab.hosts_with("ldap_masters"))[0]

    @staticmethod
    def seed_ldif(lab: "Lab") -> str:
        suffix = lab.topology["ldap_suffix"]
        dc = suffix.split(",")[0].split("=")[1]
        parts = [
            f"dn: {suffix}\nobjectClass: dcObject\nobjectClass: organization\ndc: {dc}\no: Example mail\n",
            f"dn: ou=people,{suffix}\nobjectClass: organizationalUnit\nou: people\n",
            f"dn: ou=system,{suffix}\nobjectClass: organizationalUnit\nou: system\n",
        ]
        domain = lab.topology["domain"]
        for i in range(1, SEED_USERS + 1):
            uid = f"user{i:02d}"
            parts.append(
                f"dn: uid={uid},ou=people,{suffix}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
                f"cn: User {i}\nsn: {i}\nmail: {uid}@{domain}\n"
            )
        # Components that need directory entries from the start (the Zimbra hosts' server
        # entries) provide them with a ``directory_entries(lab)`` hook.
        from lab import services

        for name in sorted({n for h in lab.hosts.values() for n in h.services}):
            hook = getattr(services.get(name), "directory_entries", None)
            if hook:
                parts.append(hook(lab))
        return "\n".join(parts)

    def start(self, lab: "Lab", host: "Host") -> None:
        confdir, _ = self._paths(host)
        urls = f"ldap://{host.address}/ ldaps://{host.address}/ ldapi://%2Frun%2Fslapd%2Fldapi"
        # -d 0: stay in the foreground (the lab supervises the process), log nothing extra.
        host.spawn(["/usr/sbin/slapd", "-d", "0", "-F", str(confdir), "-h", urls], self.name)
        host.wait_port(389, "slapd")

    def reset(self, lab: "Lab", host: "Host") -> None:
        self.stop(lab, host)
        self.prepare(lab, host)
        self.start(lab, host)

    def inventory_vars(self, lab: "Lab", host: "Host") -> dict[str, Any]:
        masters = sorted(h.name for h in lab.hosts_with("ldap_masters"))
        return {
            "zimbra_geo_ldap_server_id": masters.index(host.name) + 1,
            "zimbra_geo_ldap_uri": f"ldap://{host.address}",
        }
