"""write_report: the reports of every role, written on the controller without a module run.

Run through ansible-playbook against the implicit localhost, as the roles use it: a role's
template rendered with the template lookup, JSON and HTML under a stamped and a latest name.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    report: {ok: true, checks: [{name: dns, summary: "11 records <all> right"}]}
  tasks:
    - name: Write
      mailops.zimbra_geo.write_report:
        dir: "{{ report_dir }}"
        names: "{{ names }}"
        content:
          json: "{{ report | to_nice_json }}\\n"
          html: "<p>{{ report.checks[0].summary | e }}</p>\\n"
        mode: "{{ file_mode | default(omit) }}"
      register: written
      check_mode: "{{ in_check_mode | default(false) }}"
    - name: Show
      ansible.builtin.debug:
        msg: "RESULT {{ written | to_json }}"
"""


def run(tmp_path: Path, **extra: object) -> tuple[int, dict, str]:
    book = tmp_path / "play.yml"
    book.write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(book),
                           "-e", json.dumps(extra)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False)
    out = proc.stdout + proc.stderr
    result = {}
    if "RESULT " in out:
        result = json.loads(out.split("RESULT ", 1)[1].split('"\n', 1)[0].replace('\\"', '"'))
    return proc.returncode, result, out


def test_writes_every_format_under_every_name_and_is_idempotent(tmp_path):
    reports = tmp_path / "new" / "reports"
    rc, result, out = run(tmp_path, report_dir=str(reports), names=["verify-20261207T000000Z", "verify-latest"])
    assert rc == 0, out
    assert result["changed"] is True
    files = sorted(p.name for p in reports.iterdir())
    assert files == ["verify-20261207T000000Z.html", "verify-20261207T000000Z.json",
                     "verify-latest.html", "verify-latest.json"]
    assert json.loads((reports / "verify-latest.json").read_text())["checks"][0]["name"] == "dns"
    assert (reports / "verify-latest.html").read_text() == "<p>11 records &lt;all&gt; right</p>\n"
    assert stat.S_IMODE((reports / "verify-latest.json").stat().st_mode) == 0o644
    assert stat.S_IMODE(reports.stat().st_mode) == 0o755
    assert not [p for p in reports.iterdir() if p.name.startswith(".")], "a temporary file was left"
    # The same report again: nothing to write.
    rc, result, out = run(tmp_path, report_dir=str(reports), names=["verify-latest"])
    assert rc == 0 and result["changed"] is False, out


def test_check_mode_writes_nothing_and_says_what_it_would_write(tmp_path):
    reports = tmp_path / "reports"
    rc, result, out = run(tmp_path, report_dir=str(reports), names=["plan"], in_check_mode=True)
    assert rc == 0, out
    assert not reports.exists()
    assert sorted(result["files"]) == [f"{reports}/plan.html", f"{reports}/plan.json"]


def test_mode_is_applied(tmp_path):
    rc, _result, out = run(tmp_path, report_dir=str(tmp_path / "r"), names=["x"], file_mode="0600")
    assert rc == 0, out
    assert stat.S_IMODE((tmp_path / "r" / "x.json").stat().st_mode) == 0o600


@pytest.mark.parametrize(("extra", "message"), [
    ({"names": ["../escape"]}, "is not a plain file name"),
    ({"names": []}, "names must be a non-empty list"),
    ({"names": ["x"], "file_mode": "rw-r--r--"}, "mode must be an octal string"),
])
def test_refuses_bad_input_before_writing(tmp_path, extra, message):
    reports = tmp_path / "reports"
    rc, _result, out = run(tmp_path, report_dir=str(reports), **extra)
    assert rc != 0 and message in out, out
    assert not reports.exists()


def test_an_unwritable_directory_is_a_clear_failure(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rc, _result, out = run(tmp_path, report_dir=str(blocker / "reports"), names=["x"])
    assert rc != 0 and "cannot write the report in" in out, out
