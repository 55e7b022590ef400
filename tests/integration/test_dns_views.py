"""dns_record and the DNS client against a real BIND named with two views selected by TSIG key.

The named is the lab's (host ``dns``, 127.10.0.53:53), from the session ``lab`` fixture; with
``ZG_DNS_OWN_NAMED=1`` (or without that fixture) this module starts its own named on 127.0.0.1
with the same two-view layout (each view its own zone file and journal, no rndc channel).
Results are checked out of band with ``dig -y`` signed with each view's key, never with the
module under test.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._dns import (
    DnsClient,
    DnsError,
    View,
)

ROOT = Path(__file__).resolve().parents[2]
ZONE = "example.test"
KEY_NAMES = {"internal": "k-internal", "external": "k-external"}

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (bind9-dnsutils) is not installed")


# --- a named of our own, when there is no lab ----------------------------------------------

NAMED_CONF = """\
options {{
  directory "{dir}";
  pid-file "{dir}/named.pid";
  session-keyfile "{dir}/session.key";
  managed-keys-directory "{dir}";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  notify no;
}};
// No rndc channel: without this named would bind 953 and read the system's rndc key.
controls {{ }};
key "k-internal" {{ algorithm hmac-sha256; secret "{internal}"; }};
key "k-external" {{ algorithm hmac-sha256; secret "{external}"; }};
view "internal" {{
  match-clients {{ key k-internal; }};
  zone "example.test" {{ type primary; file "{dir}/internal/example.test.zone"; allow-update {{ key k-internal; }}; }};
}};
view "external" {{
  match-clients {{ key k-external; }};
  zone "example.test" {{ type primary; file "{dir}/external/example.test.zone"; allow-update {{ key k-external; }}; }};
}};
"""

ZONE_FILE = """\
$TTL 300
@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300
@ IN NS ns.example.test.
ns IN A 127.10.0.53
www IN A {www}
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_named(base: Path):
    named = shutil.which("named") or "/usr/sbin/named"
    if not os.path.exists(named):
        pytest.skip("named (bind9) is not installed")
    secrets = {view: base64.b64encode(os.urandom(32)).decode() for view in KEY_NAMES}
    port = _free_port()
    for view, www in (("internal", "127.10.1.41"), ("external", "127.20.1.41")):
        (base / view).mkdir()
        (base / view / "example.test.zone").write_text(ZONE_FILE.format(www=www))
    conf = base / "named.conf"
    conf.write_text(NAMED_CONF.format(dir=base, port=port, **secrets))
    with open(base / "named.log", "wb") as log:  # named keeps its own copy of the descriptor
        proc = subprocess.Popen([named, "-g", "-4", "-n", "1", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    views = {
        view: {"name": view, "server": "127.0.0.1", "port": port, "zone": ZONE,
               "key_name": KEY_NAMES[view], "key_algorithm": "hmac-sha256", "key_secret": secrets[view]}
        for view in KEY_NAMES
    }
    deadline = time.monotonic() + 20
    while True:
        try:
            DnsClient(View.from_params(views["external"]), timeout=1).check_zone()
            break
        except DnsError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail("named did not start:\n" + (base / "named.log").read_text()[-3000:])
            time.sleep(0.05)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    return views, stop


# --- the environment the tests see -----------------------------------------------------------


class DnsEnv:
    def __init__(self, views: dict, workdir: Path, lab=None) -> None:
        self.views = views
        self.workdir = workdir
        self.lab = lab
        self.names: list = []

    def name(self, label: str) -> str:
        """A record name of this test run, removed from both views at teardown."""
        name = f"t{uuid.uuid4().hex[:8]}-{label}"
        self.names.append(name)
        return name

    def dig(self, view: str, name: str, rdtype: str) -> list:
        """The values of ``name`` ``rdtype`` in ``view``, read with dig signed with its key."""
        v = self.views[view]
        fqdn = name if name.endswith(".") else f"{name}.{ZONE}."
        proc = subprocess.run(
            ["dig", f"@{v['server']}", "-p", str(v["port"]), "-y", f"hmac-sha256:{v['key_name']}:{v['key_secret']}",
             "+tcp", "+norec", "+noall", "+answer", "+comments", fqdn, rdtype],
            capture_output=True, text=True, timeout=20, check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "status: NOERROR" in proc.stdout or "status: NXDOMAIN" in proc.stdout, proc.stdout
        answers = []
        for line in proc.stdout.splitlines():
            fields = line.split(None, 4)
            if line and not line.startswith(";") and len(fields) == 5 and fields[3] == rdtype:
                answers.append(f"{fields[1]} {fields[4]}")  # "TTL value"
        return sorted(answers)

    def run(self, tasks: str, check: bool = False, diff: bool = False, extra: dict | None = None) -> list:
        """Run the tasks on the controller; return the registered result of each task."""
        out = self.workdir / f"results-{uuid.uuid4().hex}.json"
        play = textwrap.dedent(
            """\
            - name: dns_record integration
              hosts: localhost
              connection: local
              gather_facts: false
              vars:
                ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
                results: []
              tasks:
            {tasks}
                - name: Save the results
                  ansible.builtin.copy:
                    content: "{{{{ results | to_json }}}}"
                    dest: {out}
                    mode: "0600"
                  check_mode: false
                  diff: false
            """
        ).format(tasks=textwrap.indent(textwrap.dedent(tasks), "    "), out=out)
        extra_vars = {"views": self.views, **(extra or {})}
        if self.lab is not None:
            proc = self.lab.playbook(play, extra_vars=extra_vars, check=check, diff=diff)
        else:
            path = self.workdir / f"play-{uuid.uuid4().hex}.yml"
            path.write_text(play)
            varsfile = self.workdir / f"vars-{uuid.uuid4().hex}.json"
            varsfile.write_text(json.dumps(extra_vars))
            varsfile.chmod(0o600)
            argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(path)]
            argv += ["-e", f"@{varsfile}"]
            argv += ["--check"] * check + ["--diff"] * diff
            env = dict(
                os.environ,
                ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"),
                ANSIBLE_NOCOLOR="1",
            )
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
        output = (proc.stdout or "") + (proc.stderr or "")
        assert proc.returncode == 0, output
        for view in self.views.values():
            assert view["key_secret"] not in output, "a TSIG secret leaked into the output"
        self.last_output = output
        return json.loads(out.read_text())

    def cleanup(self) -> None:
        for label, view in self.views.items():
            client = View.from_params(view)
            key = dns.tsig.Key(client.key_name, client.key_secret, client.key_algorithm)
            keyring = {dns.name.from_text(client.key_name): key}
            update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=dns.name.from_text(client.key_name))
            for name in self.names:
                update.delete(f"{name}.{ZONE}.")
            response = dns.query.tcp(update, client.server, port=client.port, timeout=10)
            assert response.rcode() == dns.rcode.NOERROR, f"cleanup of view {label} failed"


@pytest.fixture(scope="module")
def dns_env(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dns")
    lab = None
    if not os.environ.get("ZG_DNS_OWN_NAMED"):  # set it for a quick loop without the lab
        try:
            lab = request.getfixturevalue("lab")
        except pytest.FixtureLookupError:
            pass
    if lab is not None:
        views = {
            view: {"name": view, "server": "127.10.0.53", "port": 53, "zone": ZONE, "key_name": KEY_NAMES[view],
                   "key_algorithm": "hmac-sha256", "key_secret": lab.secrets[f"tsig_{view}"]}
            for view in KEY_NAMES
        }
        stop = None
    else:
        views, stop = _start_named(tmp_path_factory.mktemp("named"))
    env = DnsEnv(views, workdir, lab)
    try:
        yield env
    finally:
        try:
            env.cleanup()
        finally:
            if stop is not None:
                stop()


RECORD_TASK = """\
- name: "{label}"
  mailops.zimbra_geo.dns_record:
    record: "{record}"
    type: {type}
    values: {values}
    ttl: {ttl}
    state: {state}
    views: "{{{{ {views} }}}}"
  register: r
  ignore_errors: true
- name: Collect
  ansible.builtin.set_fact:
    results: "{{{{ results + [r] }}}}"
"""


def task(record: str, rdtype: str, values: list | None, ttl: int = 300, state: str = "present",
         views: str = "views.values() | list", label: str = "dns_record") -> str:
    return RECORD_TASK.format(label=label, record=record, type=rdtype, values=json.dumps(values),
                              ttl=ttl, state=state, views=views)


# --- the module end to end ------------------------------------------------------------------


def test_mail_records_in_both_views_check_mode_idempotence_and_absent(dns_env):
    mx = dns_env.name("mx")
    mta_dc1, mta_dc2 = dns_env.name("mta-dc1"), dns_env.name("mta-dc2")
    addresses = task(mta_dc1, "A", ["127.10.1.31"]) + task(mta_dc2, "A", ["127.10.2.31"])
    (a1, a2) = dns_env.run(addresses)
    assert a1["changed"] and a2["changed"] and a1["views"][0]["verified"]
    for view in ("internal", "external"):
        assert dns_env.dig(view, mta_dc2, "A") == ["300 127.10.2.31"]

    # internal only, then check that external did not see it: the views are independent
    (only_internal,) = dns_env.run(task(mx, "MX", [f"10 {mta_dc1}.{ZONE}"], views="[views.internal]"))
    assert only_internal["changed"] is True
    assert dns_env.dig("internal", mx, "MX") == [f"300 10 {mta_dc1}.{ZONE}."]
    assert dns_env.dig("external", mx, "MX") == []

    # failover: MX to dc2 in both views; check mode predicts and sends nothing
    to_dc2 = task(mx, "MX", [f"10 {mta_dc2}.{ZONE}."])
    (predicted,) = dns_env.run(to_dc2, check=True, diff=True)
    assert predicted["changed"] is True
    assert [v["action"] for v in predicted["views"]] == ["replace", "replace"]
    assert f"+{mx}.{ZONE}. 300 IN MX 10 {mta_dc2}.{ZONE}." in dns_env.last_output
    assert dns_env.dig("internal", mx, "MX") == [f"300 10 {mta_dc1}.{ZONE}."]
    assert dns_env.dig("external", mx, "MX") == []

    (done,) = dns_env.run(to_dc2)
    assert done["changed"] is True and all(v["verified"] for v in done["views"])
    assert done["views"][0]["before"] == {"ttl": 300, "values": [f"10 {mta_dc1}.{ZONE}."]}
    for view in ("internal", "external"):
        assert dns_env.dig(view, mx, "MX") == [f"300 10 {mta_dc2}.{ZONE}."]

    (again,) = dns_env.run(to_dc2)
    assert again["changed"] is False
    assert [v["action"] for v in again["views"]] == ["none", "none"]

    # absent removes the RRset from both views, then is a no-op
    gone, gone_again = dns_env.run(task(mx, "MX", None, state="absent") * 2)
    assert gone["changed"] is True and gone_again["changed"] is False
    for view in ("internal", "external"):
        assert dns_env.dig(view, mx, "MX") == []
        assert dns_env.dig(view, mta_dc2, "A") == ["300 127.10.2.31"]  # other RRsets untouched


def test_operator_errors_name_the_view_and_change_nothing(dns_env):
    name = dns_env.name("err")
    internal = dns_env.views["internal"]
    extra = {
        # the right key name with the external view's secret: the server rejects the key
        "wrong_key": [internal, {**dns_env.views["external"], "key_secret": internal["key_secret"]}],
        "no_zone": [internal, {**dns_env.views["external"], "zone": "other.test"}],
        "unreachable": [internal, {**dns_env.views["external"], "server": "127.0.0.1", "port": _free_port()}],
    }
    tasks = "".join(
        task(name, "A", ["127.10.2.41"], views=var, label=var) for var in ("wrong_key", "no_zone", "unreachable")
    )
    wrong_key, no_zone, unreachable = dns_env.run(tasks, extra=extra)
    for result in (wrong_key, no_zone, unreachable):
        assert result["failed"] is True
        assert result["view"] == "external"
        assert result["msg"].startswith("view 'external': ")
    assert wrong_key["error_kind"] == "tsig"
    assert "rejected TSIG key 'k-external' (hmac-sha256) (BADKEY)" in wrong_key["msg"]
    assert no_zone["error_kind"] == "zone"
    assert "zone 'other.test.'" in no_zone["msg"] and "does not serve the zone" in no_zone["msg"]
    assert unreachable["error_kind"] == "unreachable"
    assert "connection refused" in unreachable["msg"]
    # every view is read before any is changed: the good internal view was left alone too
    for view in ("internal", "external"):
        assert dns_env.dig(view, name, "A") == []


# --- the client's error mapping against the real server, without Ansible ---------------------


def _client(dns_env, view="internal", timeout=5.0, **overrides) -> DnsClient:
    return DnsClient(View.from_params({**dns_env.views[view], **overrides}), timeout=timeout)


@pytest.mark.parametrize(
    "overrides",
    [
        {"key_name": "k-nobody"},
        {"key_algorithm": "hmac-sha512"},
        {"key_secret": base64.b64encode(b"not the secret of this key!!").decode()},
    ],
    ids=["unknown-key-name", "wrong-algorithm", "wrong-secret"],
)
def test_every_kind_of_wrong_key_is_a_tsig_error(dns_env, overrides):
    for protocol in ("tcp", "udp"):
        with pytest.raises(DnsError) as err:
            _client(dns_env, protocol=protocol, **overrides).check_zone()
        assert err.value.kind == "tsig"
        assert "check key_name, key_algorithm and key_secret" in str(err.value)


def test_a_silent_udp_port_times_out_with_a_clear_message(dns_env):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        with pytest.raises(DnsError) as err:
            _client(dns_env, timeout=0.3, server="127.0.0.1", port=port, protocol="udp").check_zone()
    assert err.value.kind == "timeout"
    assert f"no answer from DNS server 127.0.0.1 port {port} (UDP) within 0.3 s" in str(err.value)


def test_an_update_for_a_zone_the_view_does_not_serve_is_notauth(dns_env):
    from ansible_collections.mailops.zimbra_geo.plugins.module_utils._dns import (
        RecordSet,
    )

    client = _client(dns_env, zone="other.test")
    with pytest.raises(DnsError) as err:
        client.update("x.other.test.", "A", RecordSet(300, ("127.0.0.1",)))
    assert err.value.kind == "zone"
    assert "(NOTAUTH)" in str(err.value)


def test_views_straight_from_the_lab_inventory(dns_env):
    if dns_env.lab is None:
        pytest.skip("needs the lab inventory (zimbra_geo_dns_views)")
    name = dns_env.name("inv")
    (result,) = dns_env.run(task(name, "TXT", ["failover drill"], views="zimbra_geo_dns_views.values() | list"))
    assert result["changed"] is True
    # labelled by the views' own names when the inventory gives them, else by their key names
    assert sorted(v["name"] for v in result["views"]) in (["external", "internal"], ["k-external", "k-internal"])
    for view in ("internal", "external"):
        assert dns_env.dig(view, name, "TXT") == ['300 "failover drill"']
