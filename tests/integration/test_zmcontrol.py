"""zmcontrol against the lab's Zimbra stand-in over SSH, as a failover runs it.

On dc1-mbox1 (volumes: a tmpfs mounted on /opt/zimbra/db and /opt/zimbra/index inside the
host's mount namespace): start, idempotent start, check-mode stop that changes nothing, stop,
idempotent stop; a start refused while the volumes are not mounted; and the mail path: a
message sent to dc1-mta1's SMTP port lands in the mailbox (blob in dc1's sproxyd) and reads
back with zmmailbox. Results are checked out of band: zmcontrol status and zmmailbox run in
the host, and the mailbox's LMTP port probed from the controller.
"""

from __future__ import annotations

import json
import re
import smtplib
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("lab.core", reason="the lab core is not there yet")

MBOX, MTA = "dc1-mbox1", "dc1-mta1"
ZIMBRA_IDS = "uid=4990,gid=4990,mode=0755"
VOLUMES = ("/opt/zimbra/db", "/opt/zimbra/index")


def text(result: Any) -> str:
    out = result.stdout
    return out.decode() if isinstance(out, bytes) else (out or "")


def zimbra(lab: Any, host: str, command: str) -> Any:
    return lab.host_run(host, ["su", "-", "zimbra", "-c", command], check=False)


def states(lab: Any, host: str) -> dict[str, str]:
    found = {}
    for line in text(zimbra(lab, host, "/opt/zimbra/bin/zmcontrol status")).splitlines():
        if line.startswith("\t") and not line.startswith("\t\t"):
            name, state = line.strip().rsplit(None, 1)
            found[name.replace(" webapp", "")] = state
    return found


def address(lab: Any, host: str) -> str:
    entry = lab.hosts[host]
    return entry.address if hasattr(entry, "address") else entry["address"]


def lmtp_answers(lab: Any) -> bool:
    try:
        with socket.create_connection((address(lab, MBOX), 7025), timeout=2):
            return True
    except OSError:
        return False


def play(lab: Any, tmp_path: Path, tasks: str, check: bool = False, diff: bool = False,
         hosts: str = MBOX) -> tuple[Any, dict[str, Any]]:
    """Run `tasks` on `hosts`; the results they register (names ``r_*``) come back as JSON
    through a file written on the controller."""
    out = tmp_path / f"results-{time.monotonic_ns()}.json"
    names = sorted(set(re.findall(r"register: (r_\w+)", tasks)))
    content = "{{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}"
    playbook = textwrap.dedent("""\
        - hosts: {hosts}
          gather_facts: false
          tasks:
        {tasks}
            - name: Hand the results to the test
              ansible.builtin.copy:
                content: "{content}"
                dest: {out}
                mode: "0600"
              delegate_to: localhost
              check_mode: false
              run_once: true
        """).format(hosts=hosts, tasks=textwrap.indent(textwrap.dedent(tasks), "    "),
                    content=content, out=out)
    proc = lab.playbook(playbook, check=check, diff=diff)
    results = json.loads(out.read_text()) if out.exists() else {}
    return proc, results


@pytest.fixture(scope="module", autouse=True)
def initial_lab(lab: Any) -> None:
    """Start from the lab's initial state: nothing mounted, Zimbra stopped everywhere, whatever
    the tests before this module built or failed over."""
    lab.reset()


@pytest.fixture
def volumes(lab: Any) -> Iterator[None]:
    for path in VOLUMES:
        lab.host_run(MBOX, ["mount", "-t", "tmpfs", "-o", ZIMBRA_IDS, "tmpfs", path])
    yield
    zimbra(lab, MBOX, "/opt/zimbra/bin/zmcontrol stop")
    for path in VOLUMES:
        lab.host_run(MBOX, ["umount", path], check=False)


def test_start_stop_idempotent_with_check_mode(lab: Any, volumes: None, tmp_path: Path) -> None:
    proc, r = play(lab, tmp_path, """\
        - name: Start
          mailops.zimbra_geo.zmcontrol: {state: started}
          register: r_start
        - name: Start again
          mailops.zimbra_geo.zmcontrol: {state: started}
          register: r_start_again
        """)
    assert proc.returncode == 0, text(proc)
    assert r["r_start"]["changed"] and r["r_start"]["command"] == "start"
    assert not r["r_start_again"]["changed"] and r["r_start_again"]["command"] is None
    assert set(states(lab, MBOX).values()) == {"Running"}
    assert lmtp_answers(lab)

    proc, r = play(lab, tmp_path, """\
        - name: Stop, in check mode
          mailops.zimbra_geo.zmcontrol: {state: stopped}
          register: r_stop_check
        """, check=True, diff=True)
    assert proc.returncode == 0, text(proc)
    assert r["r_stop_check"]["changed"]
    assert set(r["r_stop_check"]["diff"]["after"]["services"].values()) == {"Stopped"}
    assert set(states(lab, MBOX).values()) == {"Running"}, "check mode changed something"

    proc, r = play(lab, tmp_path, """\
        - name: Stop
          mailops.zimbra_geo.zmcontrol: {state: stopped}
          register: r_stop
        - name: Stop again
          mailops.zimbra_geo.zmcontrol: {state: stopped}
          register: r_stop_again
        """)
    assert proc.returncode == 0, text(proc)
    assert r["r_stop"]["changed"] and not r["r_stop_again"]["changed"]
    mailbox = next(s for s in r["r_stop_again"]["status"]["services"] if s["name"] == "mailbox")
    assert mailbox["details"] == ["mysql.server is not running.", "zmmailboxdctl is not running."]
    assert set(states(lab, MBOX).values()) == {"Stopped"}
    assert not lmtp_answers(lab)


def test_mailbox_refuses_to_start_without_its_volumes(lab: Any, tmp_path: Path) -> None:
    _proc, r = play(lab, tmp_path, """\
        - name: Start without volumes
          mailops.zimbra_geo.zmcontrol: {state: started}
          register: r_start
          ignore_errors: true
        """)
    try:
        assert r["r_start"]["failed"]
        assert "mailbox" in r["r_start"]["msg"]
        assert "/opt/zimbra/db (db volume) is not mounted" in r["r_start"]["stdout"]
        assert states(lab, MBOX)["mailbox"] == "Stopped"
        assert not lmtp_answers(lab)
    finally:
        zimbra(lab, MBOX, "/opt/zimbra/bin/zmcontrol stop")


def test_mail_sent_to_the_mta_lands_in_the_mailbox(lab: Any, volumes: None,
                                                   tmp_path: Path) -> None:
    proc, _r = play(lab, tmp_path, """\
        - name: Start Zimbra
          mailops.zimbra_geo.zmcontrol: {state: started}
        """, hosts=f"{MBOX},{MTA}")
    try:
        assert proc.returncode == 0, text(proc)
        subject = f"canary {time.time_ns()}"
        message = (f"From: probe@remote.test\r\nTo: user1@example.test\r\nSubject: {subject}\r\n"
                   "\r\nno mail lost\r\n").encode()
        with smtplib.SMTP(address(lab, MTA), 25, timeout=10) as client:
            assert client.sendmail("probe@remote.test", ["user1@example.test"], message) == {}

        deadline = time.monotonic() + 30
        listing = ""
        while subject not in listing and time.monotonic() < deadline:
            listing = text(zimbra(lab, MBOX, "/opt/zimbra/bin/zmmailbox -m user1@example.test "
                                             "search in:inbox"))
            time.sleep(0.2)
        assert subject in listing, listing
        row = next(line for line in listing.splitlines() if subject in line)
        msg_id = row.split()[1]
        fetched = text(zimbra(lab, MBOX, f"/opt/zimbra/bin/zmmailbox -m user1@example.test "
                                         f"gm {msg_id}"))
        assert "no mail lost" in fetched and subject in fetched

        # Out of band: the metadata on the DB volume names the blob, and dc1's sproxyd has it.
        query = ("import sqlite3; print(sqlite3.connect('/opt/zimbra/db/data/mailbox.sqlite')"
                 f".execute('SELECT blob_key FROM message WHERE id = {int(msg_id)}')"
                 ".fetchone()[0])")
        key = lab.host_run(MBOX, ["/usr/bin/python3", "-c", query]).stdout.strip()
        blob = requests.get(f"http://{address(lab, 'dc1-sproxyd')}:81/proxy/chord/{key}",
                            timeout=10)
        assert blob.status_code == 200 and blob.content == message
    finally:
        zimbra(lab, MTA, "/opt/zimbra/bin/zmcontrol stop")


def test_long_idle_standby_without_ldap_cannot_start(lab: Any, tmp_path: Path) -> None:
    # No LDAP master answers (whatever earlier tests built), so dc2-mbox1 depends on its
    # cache; a cache older than a day is no cache at all.
    masters = sorted(h.name for h in lab.hosts.values() if "ldap_masters" in h.roles)
    for master in masters:
        lab.cli("fault", "stop", f"{master}/slapd")
    cache = "/opt/zimbra/log/.zmcontrol.cache"
    zimbra(lab, "dc2-mbox1", f"touch -d '2 days ago' {cache}")
    try:
        _proc, r = play(lab, tmp_path, """\
            - name: Start the long-idle standby
              mailops.zimbra_geo.zmcontrol: {state: started}
              register: r_start
              ignore_errors: true
            """, hosts="dc2-mbox1")
        assert r["r_start"]["failed"]
        assert "older than a day" in r["r_start"]["msg"]
        assert r["r_start"].get("command") is None, "it must fail before acting"
    finally:
        zimbra(lab, "dc2-mbox1", f"touch {cache}")
        for master in masters:
            lab.cli("fault", "start", f"{master}/slapd")
