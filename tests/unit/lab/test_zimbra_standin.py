"""The Zimbra stand-in, installed in a temporary directory and run for real (no lab):
zmcontrol's output and exit codes, the control scripts' processes, the mailbox's refusal to
start without its volumes, the enabled-services lookup (LDAP, cache, stale cache), and the
mail path SMTP -> queue -> LMTP -> blob in sproxyd (the lab's own Scality emulator) ->
zmmailbox."""

from __future__ import annotations

import json
import os
import re
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lab.zimbra import install

SYSTEM_PYTHON = "/usr/bin/python3"
MAILBOX_SERVICES = ["mailbox", "service", "stats", "zimbra", "zimbraAdmin", "zimlet"]
pytestmark = pytest.mark.skipif(
    subprocess.call([SYSTEM_PYTHON, "-c", "import aiosmtpd, ldap3, requests, dns"],
                    stderr=subprocess.DEVNULL) != 0,
    reason="the stand-in's Debian Python libraries are missing (bash scripts/dev.sh setup)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def poll(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


class Standin:
    """One installed stand-in host."""

    def __init__(self, root: Path, cfg: dict[str, Any]) -> None:
        self.root = root
        self.home = root / "opt-zimbra"
        self.cfg = cfg
        self.reinstall()

    def reinstall(self, **kw: Any) -> None:
        install.install(str(self.home), self.cfg, python=SYSTEM_PYTHON, owner="root", **kw)

    def update(self, **changes: Any) -> None:
        path = self.home / "conf" / "standin.json"
        cfg = json.loads(path.read_text())
        cfg.update(changes)
        path.write_text(json.dumps(cfg))

    def run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        where = "common/sbin" if tool == "postqueue" else "bin"
        return subprocess.run([str(self.home / where / tool), *args], capture_output=True,
                              text=True, timeout=timeout, check=False)

    def kill_all(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(self.home / "common" / "lib"),
                   ZIMBRA_HOME=str(self.home))
        subprocess.run([SYSTEM_PYTHON, "-m", "zmstandin", "kill-all"], env=env, check=False,
                       capture_output=True)


def base_cfg(root: Path, roles: list[str], services: list[str], **extra: Any) -> dict[str, Any]:
    for sub in ("db", "index"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cfg = {
        "hostname": "dc1-mbox1.example.test",
        "address": "127.0.0.1",
        "roles": roles,
        "user": "root",
        "enabled_services": services,
        "require_mounts": False,
        "volumes": {"db": str(root / "db"), "index": str(root / "index")},
        "store": {"type": "directory", "path": str(root / "blobs")},
        "lmtp": {"port": free_port()},
        "timings": {"default": {"start": 0.02, "stop": 0.02}},
    }
    cfg.update(extra)
    return cfg


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Standin]:
    host = Standin(tmp_path, base_cfg(tmp_path, ["mailbox"], MAILBOX_SERVICES))
    yield host
    host.kill_all()


def service_lines(stdout: str) -> dict[str, str]:
    return {m.group(1): m.group(2)
            for m in re.finditer(r"^\t(\S+(?: webapp)?)\s+(Running|Stopped)$", stdout, re.MULTILINE)}


def test_status_start_stop_in_zimbra_format(mailbox: Standin) -> None:
    stopped = mailbox.run("zmcontrol", "status")
    assert stopped.returncode == 1
    lines = stopped.stdout.splitlines()
    assert lines[0] == "Host dc1-mbox1.example.test"
    # "\t%-20s %10s", alphabetical, webapps suffixed, script output under stopped services.
    assert lines[1] == "\tmailbox                 Stopped"
    assert lines[2:4] == ["\t\tmysql.server is not running.", "\t\tzmmailboxdctl is not running."]
    assert list(service_lines(stopped.stdout)) == [
        "mailbox", "service webapp", "stats", "zimbra webapp", "zimbraAdmin webapp",
        "zimlet webapp", "zmconfigd"]

    started = mailbox.run("zmcontrol", "start")
    assert started.returncode == 0, started.stdout
    assert started.stdout.splitlines()[:3] == [
        "Host dc1-mbox1.example.test", "\tStarting zmconfigd...Done.", "\tStarting mailbox...Done."]
    running = mailbox.run("zmcontrol", "status")
    assert running.returncode == 0
    assert set(service_lines(running.stdout).values()) == {"Running"}
    assert "\t\t" not in running.stdout

    pid = int((mailbox.home / "log" / "mysqld.pid").read_text())
    stop = mailbox.run("zmcontrol", "stop")
    assert stop.returncode == 0
    assert "\tStopping zimlet webapp...Done." in stop.stdout
    assert stop.stdout.index("Stopping zmconfigd") < stop.stdout.index("Stopping mailbox")
    assert not Path(f"/proc/{pid}").exists() or "zmstandin" not in Path(
        f"/proc/{pid}/cmdline").read_text(errors="replace")
    assert set(service_lines(mailbox.run("zmcontrol", "status").stdout).values()) == {"Stopped"}


def test_stopped_stats_shows_but_does_not_fail_status(mailbox: Standin) -> None:
    assert mailbox.run("zmcontrol", "start").returncode == 0
    assert mailbox.run("zmstatctl", "stop").returncode == 0
    status = mailbox.run("zmcontrol", "status")
    assert service_lines(status.stdout)["stats"] == "Stopped"
    assert "\t\tzmstat is not running." in status.stdout.splitlines()
    assert status.returncode == 0


def test_a_control_script_of_its_own_runs_as_a_process(mailbox: Standin) -> None:
    # The stand-in runs its own control scripts inside zmcontrol; any other script in their
    # place (an operator's wrapper, a later Zimbra's) still runs as Zimbra runs it, a process,
    # its output under the service and its exit code deciding the service's state.
    script = mailbox.home / "bin" / "zmstatctl"
    script.write_text("#!/bin/sh\necho \"zmstat wrapper: $1\"\necho on-stderr >&2\nexit 3\n")
    assert mailbox.run("zmcontrol", "start").returncode == 1
    status = mailbox.run("zmcontrol", "status")
    assert service_lines(status.stdout)["stats"] == "Stopped"
    assert service_lines(status.stdout)["mailbox"] == "Running"
    assert "\t\tzmstat wrapper: status" in status.stdout.splitlines()
    assert "on-stderr" not in status.stdout
    assert status.returncode == 0  # stats is outside zmcontrol's exit code, as in Zimbra
    start = mailbox.run("zmcontrol", "start")
    assert "\tStarting stats...Failed." in start.stdout.splitlines()
    assert "zmstat wrapper: start" in start.stdout and "on-stderr" in start.stdout
    script.unlink()
    assert "\t\tsh: 1: " in mailbox.run("zmcontrol", "status").stdout


def test_mailbox_refuses_to_start_without_mounted_volumes(mailbox: Standin) -> None:
    mailbox.update(require_mounts=True)
    result = mailbox.run("zmcontrol", "start")
    assert result.returncode == 1
    assert "\tStarting mailbox...Failed." in result.stdout
    assert f"{mailbox.root / 'db'} (db volume) is not mounted" in result.stdout
    status = mailbox.run("zmcontrol", "status")
    assert status.returncode == 1
    assert service_lines(status.stdout)["mailbox"] == "Stopped"
    assert service_lines(status.stdout)["zmconfigd"] == "Running"


def test_mailbox_refuses_an_unwritable_volume(mailbox: Standin) -> None:
    (mailbox.root / "index").rmdir()
    (mailbox.root / "index").write_text("not a directory")
    result = mailbox.run("zmmailboxdctl", "start")
    assert result.returncode == 1
    assert "(index volume) is not writable" in result.stdout


def test_enabled_services_from_cache_then_stale_cache(tmp_path: Path) -> None:
    closed = free_port()
    ldap = {"urls": [f"ldap://127.0.0.1:{closed}/"], "base": "ou=zimbraServers,dc=x",
            "bind_dn": "cn=admin,dc=x", "password": "x", "timeout": 2}
    host = Standin(tmp_path, base_cfg(tmp_path, ["mailbox"], [], ldap=ldap))
    try:
        missing = host.run("zmcontrol", "status")
        assert missing.returncode == 1
        assert missing.stdout == ("Unable to determine enabled services. Cache is out of date "
                                  "or doesn't exist.\n")
        assert host.run("zmcontrol", "start").returncode == 1

        host.reinstall(fresh_cache=True)
        cached = host.run("zmcontrol", "status")
        assert "Enabled services read from cache" in cached.stderr
        assert set(service_lines(cached.stdout)) >= {"mailbox", "zimlet webapp", "zmconfigd"}

        two_days_ago = time.time() - 2 * 86400
        os.utime(host.home / "log" / ".zmcontrol.cache", (two_days_ago, two_days_ago))
        stale = host.run("zmcontrol", "status")
        assert stale.returncode == 1
        assert "Cache is out of date" in stale.stdout
    finally:
        host.kill_all()


def test_only_the_zimbra_user_may_run_it_and_minus_h_always_exits_0(mailbox: Standin) -> None:
    assert mailbox.run("zmcontrol", "-H", "dc2-mbox1.example.test", "status").returncode == 0
    version = mailbox.run("zmcontrol", "-v")
    assert version.returncode == 0 and version.stdout.startswith("Release ")
    assert mailbox.run("zmcontrol", "bogus").returncode == 1
    mailbox.update(user="zimbra")
    refused = mailbox.run("zmcontrol", "status")
    assert refused.returncode == 255
    assert refused.stderr == "Run as the zimbra user!\n"


def test_stop_waits_for_the_configured_shutdown(mailbox: Standin) -> None:
    mailbox.update(timings={"default": {"start": 0.02, "stop": 0.02},
                            "mysqld": {"start": 0.02, "stop": 0.6}})
    assert mailbox.run("zmstorectl", "start").returncode == 0
    pid = int((mailbox.home / "log" / "mysqld.pid").read_text())
    began = time.monotonic()
    result = mailbox.run("mysql.server", "stop")
    assert result.stdout == "Stopping mysql...done.\n"
    assert time.monotonic() - began >= 0.6
    assert not (mailbox.home / "log" / "mysqld.pid").exists()
    assert "zmstandin-mysqld" not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace") \
        if Path(f"/proc/{pid}").exists() else True


@pytest.fixture
def sproxyd(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(  # the lab's Scality emulator, unmodified
        [sys.executable, "-m", "lab.scality", "--role", "sproxyd", "--listen",
         f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "sproxyd"), "--site-name", "dc1",
         "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/proxy/chord"

    def answers() -> bool:
        try:
            return requests.get(f"{url}/.conf", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        assert poll(answers), "sproxyd did not come up"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_mail_path_through_sproxyd_with_queue_while_mailbox_is_down(
        tmp_path: Path, sproxyd: str) -> None:
    mbox_root, mta_root = tmp_path / "mbox", tmp_path / "mta"
    mbox_cfg = base_cfg(mbox_root, ["mailbox"], MAILBOX_SERVICES,
                        store={"type": "sproxyd", "url": sproxyd})
    smtp_port = free_port()
    mta_cfg = base_cfg(mta_root, ["mta"], ["mta", "amavis", "antispam", "antivirus", "opendkim"],
                       hostname="dc1-mta1.example.test",
                       smtp={"port": smtp_port, "domains": ["example.test"],
                             "mailhost": "mbox1.example.test",
                             "static_hosts": {"mbox1.example.test": "127.0.0.1"},
                             "lmtp_port": mbox_cfg["lmtp"]["port"], "retry_interval": 30})
    mbox, mta = Standin(mbox_root, mbox_cfg), Standin(mta_root, mta_cfg)
    try:
        # Stopped, the MTA's postqueue fails as Postfix's does: on stderr, EX_UNAVAILABLE.
        for flag, what in (("-p", "Queue report unavailable"), ("-f", "Cannot flush mail queue")):
            down = mta.run("postqueue", flag)
            assert (down.returncode, down.stdout) == (69, ""), down
            assert down.stderr.strip() == f"postqueue: fatal: {what} - mail system is down"
        assert mta.run("zmcontrol", "start").returncode == 0
        message = (b"From: sender@remote.test\r\nTo: user1@example.test\r\n"
                   b"Subject: failover canary\r\nMessage-ID: <canary@remote.test>\r\n\r\n"
                   b"no mail lost\r\n")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            assert client.sendmail("sender@remote.test", ["user1@example.test"], message) == {}
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail("sender@remote.test", ["someone@elsewhere.test"], message)

        # The mailbox is down: the message waits in the queue.
        def deferred() -> str:
            listing = mta.run("postqueue", "-p").stdout
            return listing if "Connection refused" in listing else ""

        queued = poll(deferred)
        assert "user1@example.test" in queued, mta.run("postqueue", "-p").stdout

        assert mbox.run("zmcontrol", "start").returncode == 0
        assert mta.run("postqueue", "-f").returncode == 0
        assert poll(lambda: mta.run("postqueue", "-p").stdout == "Mail queue is empty\n")

        listing = mbox.run("zmmailbox", "-z", "-m", "user1@example.test", "s", "-t", "message",
                           "in:inbox")
        assert listing.stdout.startswith("num: 1, more: false\n")
        assert "failover canary" in listing.stdout
        fetched = mbox.run("zmmailbox", "-m", "user1@example.test", "gm", "1")
        assert fetched.returncode == 0
        assert fetched.stdout.replace("\n", "\r\n").encode() == message

        # The blob is in sproxyd (key from the metadata on the DB volume), not on disk.
        import sqlite3

        with sqlite3.connect(mbox_root / "db" / "data" / "mailbox.sqlite") as db:
            (key,) = db.execute("SELECT blob_key FROM message").fetchone()
        assert re.fullmatch(r"[0-9A-F]{40}", key)
        assert requests.get(f"{sproxyd}/{key}", timeout=5).content == message
        assert not (mbox_root / "blobs").exists()
        assert mbox.run("zmmailbox", "-m", "user1@example.test", "gm", "2").returncode == 2
    finally:
        mta.kill_all()
        mbox.kill_all()


class FakeHost:
    def __init__(self, name: str, site: str, address: str, roles: list[str]) -> None:
        self.name, self.site, self.address, self.roles = name, site, address, roles


def fake_lab() -> Any:
    import types

    hosts = [FakeHost("dns", "core", "127.10.0.53", ["dns"])]
    for n, site in ((1, "dc1"), (2, "dc2")):
        hosts += [
            FakeHost(f"{site}-ldap1", site, f"127.10.{n}.11", ["ldap_masters", "zimbra"]),
            FakeHost(f"{site}-ldap2", site, f"127.10.{n}.12", ["ldap_masters", "zimbra"]),
            FakeHost(f"{site}-mbox1", site, f"127.10.{n}.21", ["mailbox", "zimbra"]),
            FakeHost(f"{site}-mta1", site, f"127.10.{n}.31", ["mta", "zimbra"]),
            FakeHost(f"{site}-proxy1", site, f"127.10.{n}.41", ["proxy", "zimbra"]),
            FakeHost(f"{site}-sproxyd", site, f"127.10.{n}.61", ["appliance"]),
        ]
    return types.SimpleNamespace(hosts={h.name: h for h in hosts}, secret=lambda name: name,
                                 topology={"domain": "example.test", "active_site": "dc1"})


def test_service_configuration_follows_the_topology() -> None:
    from lab.zimbra import service

    lab = fake_lab()
    roles = {name: service.zimbra_roles(h) for name, h in lab.hosts.items()}
    assert roles["dc2-mbox1"] == ["mailbox"] and roles["dc1-mta1"] == ["mta"]
    assert roles["dc1-sproxyd"] == [] and roles["dc1-ldap1"] == [] and roles["dns"] == []

    mbox = service.standin_config(lab, lab.hosts["dc2-mbox1"])
    assert mbox["store"]["url"] == "http://127.10.2.61:81/proxy/chord"
    assert mbox["volumes"] == {"db": "/opt/zimbra/db", "index": "/opt/zimbra/index"}
    # The site's own masters first, then the other site's.
    assert mbox["ldap"]["urls"] == ["ldap://127.10.2.11/", "ldap://127.10.2.12/",
                                    "ldap://127.10.1.11/", "ldap://127.10.1.12/"]
    mta = service.standin_config(lab, lab.hosts["dc2-mta1"])
    assert mta["smtp"]["static_hosts"] == {"mbox1.example.test": "127.10.1.21"}
    assert mta["smtp"]["dns"]["key_name"] == "k-internal"
    assert mta["smtp"]["dns"]["key_secret"] == "tsig_internal"

    ldif = service.server_entries_ldif(lab)
    assert ldif.count("\ndn: cn=") == 6
    assert "dn: cn=dc1-proxy1.example.test,ou=zimbraServers,dc=example,dc=test" in ldif
    assert "description: zimlet" in ldif


def test_zmlocalconfig_edits_prints_and_is_honoured(mailbox: Standin) -> None:
    from lab.zimbra.standin import config as standin_config

    assert mailbox.run("zmlocalconfig", "-s", "-m", "nokey", "ldap_url").stdout == ""
    edit = mailbox.run("zmlocalconfig", "-e", "ldap_url=ldap://a:389 ldap://b:389",
                       "zimbra_ldap_password=secret", "sproxyd_url=http://s:81/proxy/chord")
    assert edit.returncode == 0, edit.stderr
    assert mailbox.run("zmlocalconfig", "-s", "-m", "nokey", "ldap_url").stdout == \
        "ldap://a:389 ldap://b:389\n"
    # Passwords are masked unless -s; plain and shell formats as Zimbra prints them.
    assert mailbox.run("zmlocalconfig", "zimbra_ldap_password").stdout == "zimbra_ldap_password = *\n"
    assert mailbox.run("zmlocalconfig", "-s", "-m", "shell", "zimbra_ldap_password").stdout == \
        "zimbra_ldap_password='secret';\n"
    missing = mailbox.run("zmlocalconfig", "-m", "nokey", "no_such_key")
    assert (missing.returncode, missing.stdout) == (0, "") and "no_such_key" in missing.stderr
    assert mailbox.run("zmlocalconfig", "-e", "novalue").returncode == 1

    # The stand-in takes the LDAP masters and the blob store from localconfig.
    cfg = standin_config.load(str(mailbox.home))
    assert cfg["store"] == {"type": "sproxyd", "url": "http://s:81/proxy/chord"}
    assert (mailbox.home / "conf" / "localconfig.xml").read_text().count("<key name=") == 3

    assert mailbox.run("zmlocalconfig", "-u", "sproxyd_url").returncode == 0
    assert standin_config.load(str(mailbox.home))["store"]["type"] == "directory"
    assert mailbox.run("zmlocalconfig", "-u", "sproxyd_url").returncode == 1


def test_zmlocalconfig_ldap_url_decides_where_zmcontrol_reads(tmp_path: Path) -> None:
    from lab.zimbra.standin import config as standin_config

    closed = free_port()
    ldap = {"urls": [f"ldap://127.0.0.1:{closed}/"], "base": "ou=zimbraServers,dc=x",
            "bind_dn": "cn=admin,dc=x", "password": "x", "timeout": 2}
    host = Standin(tmp_path, base_cfg(tmp_path, ["mailbox"], [], ldap=ldap,
                                      localconfig={"ldap_url": "ldap://m1:389 ldap://m2:389"}))
    assert standin_config.load(str(host.home))["ldap"]["urls"] == ["ldap://m1:389", "ldap://m2:389"]
    assert host.run("zmlocalconfig", "-m", "nokey", "ldap_url").stdout == "ldap://m1:389 ldap://m2:389\n"
    # A reinstall (lab reset) puts back the localconfig of a fresh install.
    host.run("zmlocalconfig", "-e", "ldap_url=ldap://other:389")
    host.reinstall()
    assert host.run("zmlocalconfig", "-m", "nokey", "ldap_url").stdout == "ldap://m1:389 ldap://m2:389\n"


def test_service_writes_the_installed_localconfig_and_public_address() -> None:
    from lab.zimbra import service

    lab = fake_lab()
    cfg = service.standin_config(lab, lab.hosts["dc2-mta1"])
    assert cfg["localconfig"]["ldap_url"] == "ldap://127.10.1.11:389"
    host = lab.hosts["dc2-mta1"]
    host.public_address = "127.20.2.31"
    assert service.ZimbraService().inventory_vars(lab, host)["zimbra_geo_public_address"] == "127.20.2.31"


def test_zmprov_reads_and_modifies_its_own_server_only(mailbox: Standin) -> None:
    assert mailbox.run("zmprov", "-l", "gs", "dc1-mbox1.example.test").stdout == \
        "# name dc1-mbox1.example.test\n\n"
    assert mailbox.run("zmprov", "-l", "ms", "dc1-mbox1.example.test",
                       "zimbraSmtpHostname", "a.example.test",
                       "zimbraSmtpHostname", "b.example.test",
                       "zimbraMtaRelayHost", "[relay.example.net]:25").returncode == 0
    shown = mailbox.run("zmprov", "-l", "gs", "dc1-mbox1.example.test", "zimbraSmtpHostname",
                        "zimbraMtaRelayHost")
    assert shown.stdout.splitlines() == [
        "# name dc1-mbox1.example.test", "zimbraSmtpHostname: a.example.test",
        "zimbraSmtpHostname: b.example.test", "zimbraMtaRelayHost: [relay.example.net]:25", ""]
    assert mailbox.run("zmprov", "ms", "dc1-mbox1.example.test", "-zimbraSmtpHostname",
                       "a.example.test").returncode == 0
    assert "a.example.test" not in mailbox.run("zmprov", "gs", "dc1-mbox1.example.test").stdout
    other = mailbox.run("zmprov", "gs", "dc2-mbox1.example.test")
    assert other.returncode == 2
    assert "account.NO_SUCH_SERVER" in other.stderr


def test_outgoing_mail_leaves_through_the_mta_and_its_relayhost(tmp_path: Path) -> None:
    """mailbox --SMTP--> MTA (relays for mynetworks only) --SMTP--> relayhost (the lab's
    outside relay), which records the MTA's address; no relayhost: the mail stays queued."""
    from lab.smtp_sink import received

    sink_port, smtp_port = free_port(), free_port()
    sink = subprocess.Popen([sys.executable, "-m", "lab.smtp_sink", "--listen",
                             f"127.0.0.1:{sink_port}", "--dir", str(tmp_path / "out")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mbox_root, mta_root = tmp_path / "mbox", tmp_path / "mta"
    mbox = Standin(mbox_root, base_cfg(mbox_root, ["mailbox"], MAILBOX_SERVICES, server_attrs={
        "zimbraSmtpHostname": ["127.0.0.1"], "zimbraSmtpPort": [str(smtp_port)]}))
    mta = Standin(mta_root, base_cfg(
        mta_root, ["mta"], ["mta", "amavis", "antispam", "antivirus", "opendkim"],
        hostname="dc1-mta1.example.test",
        smtp={"port": smtp_port, "domains": ["example.test"], "mailhost": "mbox1.example.test",
              "static_hosts": {"mbox1.example.test": "127.0.0.1"},
              "lmtp_port": mbox.cfg["lmtp"]["port"], "retry_interval": 30,
              "mynetworks": ["127.0.0.0/30"]}))
    message = b"From: user1@example.test\nTo: friend@example.net\nSubject: outgoing\n\nhi\n"
    try:
        assert mbox.run("zmcontrol", "start").returncode == 0
        assert mta.run("zmcontrol", "start").returncode == 0
        assert poll(lambda: sink.poll() is None and
                    socket.socket().connect_ex(("127.0.0.1", sink_port)) == 0)
        # A client outside mynetworks may not relay.
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10,
                          source_address=("127.0.0.9", 0)) as client:
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail("x@elsewhere.test", ["friend@example.net"], message)

        # No relayhost yet: accepted from the mailbox, then deferred in the queue.
        sent = subprocess.run([str(mbox.home / "bin" / "zmmailbox"), "-z", "-m",
                               "user1@example.test", "sendMessage"], input=message,
                              capture_output=True, timeout=30, check=False)
        assert sent.returncode == 0, sent.stderr
        assert b"queued as" in sent.stdout
        assert poll(lambda: "no relayhost" in mta.run("postqueue", "-p").stdout)
        assert not (tmp_path / "out").exists() or received(tmp_path / "out") == []

        assert mta.run("zmprov", "ms", "dc1-mta1.example.test", "zimbraMtaRelayHost",
                       f"[127.0.0.1]:{sink_port}").returncode == 0
        assert mta.run("postqueue", "-f").returncode == 0
        got = poll(lambda: received(tmp_path / "out"))
        assert [(m["mail_from"], m["rcpt_tos"], m["peer"]) for m in got] == \
            [("user1@example.test", ["friend@example.net"], "127.0.0.1")]
        assert "Subject: outgoing" in got[0]["data"]
        assert poll(lambda: mta.run("postqueue", "-p").stdout == "Mail queue is empty\n")

        # Sending needs mailboxd.
        assert mbox.run("zmcontrol", "stop").returncode == 0
        refused = subprocess.run([str(mbox.home / "bin" / "zmmailbox"), "-m", "user1@example.test",
                                  "sm"], input=message, capture_output=True, timeout=30, check=False)
        assert refused.returncode == 2 and b"mailboxd is not running" in refused.stderr
    finally:
        mta.kill_all()
        mbox.kill_all()
        sink.terminate()
        sink.wait(timeout=10)
