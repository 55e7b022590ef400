"""The lab itself, as an operator uses it: hosts over SSH, LDAP, DNS views, faults, teardown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def initial_lab(lab):
    """These tests describe the lab as `lab up` leaves it: start from that state."""
    lab.reset()


def ssh_hosts(lab) -> list[str]:
    return sorted(h.name for h in lab.core.ssh_hosts())


def ping(lab, pattern: str = "all") -> dict[str, str]:
    """`ansible -m ping` over real SSH; host -> SUCCESS/UNREACHABLE."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "-i", str(lab.inventory), pattern,
         "-m", "ansible.builtin.ping", "-T", "5"],
        cwd=REPO, env=lab.env(), capture_output=True, text=True,
    )
    result = {}
    for line in proc.stdout.splitlines():
        if " | " in line:
            host, state = line.split(" | ")[0:2]
            result[host.strip()] = state.split()[0]
    return result


def tcp(address: str, port: int) -> bool:
    from lab.core import tcp_answers

    return tcp_answers(address, port, timeout=1.0)


def test_ansible_reaches_every_host_over_ssh(lab):
    result = ping(lab)
    assert result == {h: "SUCCESS" for h in ssh_hosts(lab)}
    # Each host is its own machine: its own hostname and its own /etc/hosts.
    out = lab.host_run("dc2-mbox1", ["hostname"]).stdout.strip()
    assert out == "dc2-mbox1"


def test_prereq_check_passes_on_the_lab_and_names_each_missing_prerequisite(lab):
    """playbooks/prereq_check.yml reads every host (no change) and lists every problem at once."""
    proc = lab.playbook(REPO / "playbooks" / "prereq_check.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Every prerequisite is in place on 10 hosts" in proc.stdout
    assert "changed=0" in proc.stdout and "changed=1" not in proc.stdout
    # A CA file missing on the controller: refused before any backend is contacted.
    proc = lab.playbook(REPO / "playbooks" / "prereq_check.yml",
                        extra_vars={"zimbra_geo_ca_path": "/etc/zimbra-geo-no-such-ca.pem"})
    assert proc.returncode != 0
    assert "ca_path /etc/zimbra-geo-no-such-ca.pem is not a file" in proc.stdout, proc.stdout[-3000:]
    assert "nothing was contacted" in proc.stdout
    # A CA file the controller has and the LDAP masters do not (the machine's /run: each lab host
    # has a /run of its own), and fewer forks than mailbox servers.
    ca = Path("/run") / f"zimbra-geo-test-ca-{os.getpid()}.pem"
    ca.write_bytes((lab.core.dir / "ca" / "ca.pem").read_bytes())
    try:
        proc = lab.playbook(REPO / "playbooks" / "prereq_check.yml", args=["-f", "1"],
                            extra_vars={"zimbra_geo_ca_path": str(ca)})
    finally:
        ca.unlink()
    assert proc.returncode != 0
    for master in ("dc1-ldap1", "dc1-ldap2", "dc2-ldap1", "dc2-ldap2"):
        assert f"- {master}: {ca} is missing" in proc.stdout, proc.stdout[-3000:]
    assert "forks is 1 for 2 mailbox servers" in proc.stdout
    assert "- dc1-mbox1:" not in proc.stdout  # the mailbox servers have what they need


def test_hosts_have_private_files(lab):
    lab.host_run("dc1-mbox1", ["sh", "-c", "echo marker > /opt/zimbra/private-test"])
    try:
        other = lab.host_run("dc2-mbox1", ["test", "-e", "/opt/zimbra/private-test"], check=False)
        assert other.returncode != 0, "/opt/zimbra must be private to each host"
        assert not Path("/opt/zimbra/private-test").exists()
        fstab = lab.host_run("dc1-mbox1", ["cat", "/etc/fstab"]).stdout
        assert "private fstab" in fstab
    finally:
        lab.host_run("dc1-mbox1", ["rm", "-f", "/opt/zimbra/private-test"])


def test_root_logs_in_to_a_home_of_the_host(lab):
    # A host's root has its own home with Debian's default dotfiles, as on a fresh server:
    # not the home of whoever runs the lab, whose shell start-up would run in every SSH
    # session of every host.
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "-i", str(lab.inventory), "dc2-mbox1",
         "-m", "ansible.builtin.shell", "-a", "echo home=$HOME; cat ~/.bashrc"],
        cwd=REPO, env=lab.env(), capture_output=True, text=True, check=True)
    home = proc.stdout.split("home=", 1)[1].splitlines()[0]
    assert home != os.path.expanduser("~") and home.startswith(str(lab.core.dir)), proc.stdout
    skel = Path("/etc/skel/.bashrc")
    bashrc = proc.stdout.split("home=", 1)[1].split("\n", 1)[1]
    assert bashrc.strip() == (skel.read_text().strip() if skel.is_file() else "")


def test_ldapsearch_answers_on_all_four_masters(lab):
    password = lab.secrets["ldap_admin_password"]
    masters = sorted((h for h in lab.hosts.values() if "ldap_masters" in h.roles), key=lambda h: h.name)
    assert len(masters) == 4
    counts = {}
    for host in masters:
        proc = subprocess.run(
            ["ldapsearch", "-LLL", "-x", "-ZZ", "-H", f"ldap://{host.address}", "-D", "cn=admin,dc=example,dc=test",
             "-w", password, "-b", "dc=example,dc=test", "(objectClass=inetOrgPerson)", "dn"],
            capture_output=True, text=True, env={**os.environ, "LDAPTLS_CACERT": str(lab.core.ca.cert_path)},
        )
        # 0 = found entries, 32 = the suffix is not there yet: both are answers from slapd.
        assert proc.returncode in (0, 32), proc.stderr
        counts[host.name] = proc.stdout.count("dn: ")
    # Seeded on one master only, so that building replication is real work.
    assert sorted(counts.values()) == [0, 0, 0, 20]


def dig(lab, name: str, key: str | None) -> subprocess.CompletedProcess:
    argv = ["dig", "@127.10.0.53", "+time=2", "+tries=1", name, "A"]
    if key:
        argv += ["-y", f"hmac-sha256:k-{key}:{lab.secrets['tsig_' + key]}"]
    return subprocess.run(argv, capture_output=True, text=True)


def answer(out: str) -> list[str]:
    lines = out.split(";; ANSWER SECTION:\n", 1)
    if len(lines) < 2:
        return []
    return [line.split()[-1] for line in lines[1].split("\n\n")[0].splitlines()]


def test_dns_views_are_selected_by_key_and_unsigned_is_refused(lab):
    internal = dig(lab, "mail.example.test", "internal")
    external = dig(lab, "mail.example.test", "external")
    assert "status: NOERROR" in internal.stdout
    assert answer(internal.stdout) == [lab.hosts["dc1-mta1"].address]
    assert answer(external.stdout) == [lab.hosts["dc1-mta1"].public_address]
    unsigned = dig(lab, "mail.example.test", None)
    assert "status: REFUSED" in unsigned.stdout
    # Internal names are not in the external view.
    assert "status: NXDOMAIN" in dig(lab, "dc1-ldap1.example.test", "external").stdout


def test_reset_restores_the_zones_even_with_a_journal(lab):
    key = f"hmac-sha256:k-internal:{lab.secrets['tsig_internal']}"
    update = "server 127.10.0.53\nzone example.test\nupdate delete mail.example.test A\n" \
             "update add mail.example.test 60 A 127.10.2.31\nsend\n"
    subprocess.run(["nsupdate", "-y", key], input=update, text=True, check=True, capture_output=True)
    assert answer(dig(lab, "mail.example.test", "internal").stdout) == ["127.10.2.31"]
    assert list((lab.dir / "hosts" / "dns" / "named" / "internal").glob("*.jnl"))
    lab.reset()
    assert answer(dig(lab, "mail.example.test", "internal").stdout) == [lab.hosts["dc1-mta1"].address]


def test_cut_site_isolates_it_and_heal_restores_it(lab):
    dc1, dc2 = lab.hosts["dc1-ldap1"], lab.hosts["dc2-ldap1"]
    assert tcp(dc1.address, 22)
    lab.cli("fault", "cut-site", "dc1")
    try:
        assert not tcp(dc1.address, 22), "the controller must not reach a cut site"
        from_dc2 = lab.host_run("dc2-ldap1", ["timeout", "3", "bash", "-c", f"echo > /dev/tcp/{dc1.address}/389"],
                                check=False)
        assert from_dc2.returncode != 0, "dc2 must not reach a cut site"
        inside = lab.host_run("dc1-ldap2", ["timeout", "3", "bash", "-c", f"echo > /dev/tcp/{dc1.address}/389"],
                              check=False)
        assert inside.returncode == 0, "hosts of a cut site still reach each other"
        assert tcp(dc2.address, 22)
        result = ping(lab)
        assert {h for h, s in result.items() if s != "SUCCESS"} == {h for h in ssh_hosts(lab) if h.startswith("dc1-")}
        status = lab.cli("status", check=False)
        assert status.returncode == 1 and "cut" in status.stdout
    finally:
        lab.cli("fault", "heal")
    assert tcp(dc1.address, 22)
    assert ping(lab) == {h: "SUCCESS" for h in ssh_hosts(lab)}


def test_stop_and_start_a_service_and_a_host(lab):
    ldap = lab.hosts["dc2-ldap2"]
    lab.cli("fault", "stop", "dc2-ldap2/slapd")
    assert not tcp(ldap.address, 389)
    assert tcp(ldap.address, 22), "stopping a service leaves the host up"
    lab.cli("fault", "start", "dc2-ldap2/slapd")
    assert tcp(ldap.address, 389)
    lab.cli("fault", "stop", "dc2-mbox1")
    assert not tcp(lab.hosts["dc2-mbox1"].address, 22)
    lab.cli("fault", "start", "dc2-mbox1")
    assert tcp(lab.hosts["dc2-mbox1"].address, 22)
    bad = lab.cli("fault", "stop", "dc9-nothing", check=False)
    assert bad.returncode != 0 and "unknown host" in bad.stderr


def test_status_lists_every_component(lab):
    proc = lab.cli("status")
    lines = proc.stdout.splitlines()
    assert all(line.startswith("up") for line in lines)
    for host in lab.hosts.values():
        for service in host.services:
            assert any(service in line and host.name in line for line in lines), (host.name, service)


def _lab_processes(name: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{name}-")]


def test_down_after_a_killed_up_leaves_nothing_behind(tmp_path):
    """A second, separate lab: killed while coming up, then `lab down` cleans everything."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = "zgkill"
    env = {**os.environ, "ZG_LAB_NAME": name}
    up = subprocess.Popen([sys.executable, "-m", "lab", "up"], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Kill it mid-way: as soon as its namespaces exist.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_lab_processes(name)) < 5:
        time.sleep(0.02)
    up.send_signal(signal.SIGKILL)
    up.wait()
    assert _lab_processes(name), "the killed `lab up` should have left namespaces to clean"
    down = subprocess.run([sys.executable, "-m", "lab", "down"], cwd=REPO, env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert _lab_processes(name) == []
    assert not Path(f"/var/lib/zglab/{name}").exists()
    leftovers = subprocess.run(["pgrep", "-af", f"/var/lib/zglab/{name}/"], capture_output=True, text=True).stdout
    assert leftovers == ""
    mounts = Path("/proc/self/mounts").read_text()
    assert f"/var/lib/zglab/{name}" not in mounts


def test_up_clears_a_stale_lab():
    name = "zgstale"
    env = {**os.environ, "ZG_LAB_NAME": name}
    try:
        for _ in range(2):  # the second `up` finds the first lab still there
            proc = subprocess.run([sys.executable, "-m", "lab", "up"], cwd=REPO, env=env, capture_output=True,
                                  text=True)
            assert proc.returncode == 0, proc.stderr
        assert "clearing away the stale lab" in proc.stderr
        state = json.loads(Path(f"/var/lib/zglab/{name}/state.json").read_text())
        assert state["status"] == "up"
    finally:
        subprocess.run([sys.executable, "-m", "lab", "down"], cwd=REPO, env=env, capture_output=True)
    assert _lab_processes(name) == []
