# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client for Zimbra's ``zmcontrol`` on the host the module runs on.

``zmcontrol status`` is parsed line by line; its exit code is never trusted alone: it is 0
while a service outside Zimbra's status list (``stats``, ``logger``, ...) is stopped, and 1
both when a service is stopped and when the enabled services could not be read at all.
What a line says is what counts:

- ``Host <name>`` first;
- one ``\\t<service>[ webapp] <Running|Stopped>`` line per enabled service
  (``"\\t%-20s %10s"``);
- under a stopped service, its control script's output on lines starting with two tabs;
- the failures ``Unable to determine enabled services`` (no LDAP master and no cache under a
  day old), ``Cannot determine services``, ``Timeout after N seconds``, ``Run as the zimbra
  user!``.

Errors of every kind are raised as :class:`ZimbraError`; nothing here calls ``fail_json``.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    RunCommand = Callable[[list[str]], tuple[int, str, str]]

RUNNING = "Running"
STOPPED = "Stopped"
_SERVICE_LINE = re.compile(r"^\t(?P<name>[^\t\s][^\t]*?)\s+(?P<state>Running|Stopped)\s*$")
_DETAIL_LINE = re.compile(r"^\t\t(?P<text>.*)$")
_FAILURES = (
    ("Unable to determine enabled services. Cache",
     ("zmcontrol could not read the host's enabled services: no LDAP master answered and "
      "its cache is missing or older than a day (a long-idle host cannot start without LDAP)")),
    ("Cannot determine services", "zmcontrol found no enabled services for this host"),
    ("Can't contact ldap", "zmcontrol could not contact LDAP"),
    ("Run as the zimbra user", "zmcontrol must run as the Zimbra user (see run_as)"),
)
_TIMEOUT = re.compile(r"Timeout after (\d+) seconds")
# Exit code of coreutils' timeout(1) when it had to stop the command.
TIMEOUT_RC = 124


class ZimbraError(Exception):
    """A zmcontrol call failed or its output could not be understood."""

    def __init__(self, message: str, rc: int | None = None, stdout: str = "",
                 stderr: str = "") -> None:
        super().__init__(message)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        # What the module had found and done when it failed, returned with the failure.
        self.result: dict[str, Any] = {}

    def details(self) -> dict[str, Any]:
        return {"rc": self.rc, "stdout": self.stdout, "stderr": self.stderr}


def zimbra_argument_spec() -> dict[str, Any]:
    """Options shared by the modules that run Zimbra's command-line tools on the host."""
    return {
        "zmcontrol_path": {"type": "path", "default": "/opt/zimbra/bin/zmcontrol"},
        "run_as": {"type": "str", "default": "zimbra"},
    }


class ServiceStatus:
    """One service line of ``zmcontrol status`` and the detail lines under it."""

    def __init__(self, name: str, state: str, details: list[str] | None = None) -> None:
        self.webapp = name.endswith(" webapp")
        self.name = name[: -len(" webapp")] if self.webapp else name
        self.state = state
        self.details = details if details is not None else []

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "running": self.running,
                "webapp": self.webapp, "details": list(self.details)}


class HostStatus:
    """The parsed ``zmcontrol status`` of one host."""

    def __init__(self, host: str, services: list[ServiceStatus], rc: int = 0,
                 from_cache: bool = False, warnings: list[str] | None = None) -> None:
        self.host = host
        self.services = services
        self.rc = rc
        self.from_cache = from_cache
        self.warnings = warnings if warnings is not None else []

    def considered(self, ignore: list[str] | None = None) -> list[ServiceStatus]:
        skip = set(ignore or [])
        return [s for s in self.services if s.name not in skip]

    def all_running(self, ignore: list[str] | None = None) -> bool:
        return all(s.running for s in self.considered(ignore))

    def all_stopped(self, ignore: list[str] | None = None) -> bool:
        return not any(s.running for s in self.considered(ignore))

    def states(self) -> dict[str, str]:
        return {s.name: s.state for s in self.services}

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "services": [s.as_dict() for s in self.services],
            "running": [s.name for s in self.services if s.running],
            "stopped": [s.name for s in self.services if not s.running],
            "from_cache": self.from_cache,
            "rc": self.rc,
        }


def _failure(stdout: str, stderr: str, rc: int | None) -> None:
    text = stdout + "\n" + stderr
    match = _TIMEOUT.search(text)
    if match:
        raise ZimbraError(f"zmcontrol gave up after {match.group(1)} seconds (its own timeout)",
                          rc, stdout, stderr)
    for needle, message in _FAILURES:
        if needle in text:
            raise ZimbraError(message, rc, stdout, stderr)


def parse_status(stdout: str, stderr: str = "", rc: int = 0) -> HostStatus:
    """Parse ``zmcontrol status``. Raises ZimbraError when the output is not a status."""
    _failure(stdout, stderr, rc)
    host = None
    services: list[ServiceStatus] = []
    for line in stdout.splitlines():
        if host is None:
            if line.startswith("Host "):
                host = line[len("Host "):].strip()
            continue
        detail = _DETAIL_LINE.match(line)
        if detail:
            if services:
                services[-1].details.append(detail.group("text").rstrip())
            continue
        match = _SERVICE_LINE.match(line)
        if match:
            services.append(ServiceStatus(match.group("name").strip(), match.group("state")))
    if host is None or not services:
        raise ZimbraError("zmcontrol status printed no host and service lines", rc, stdout,
                          stderr)
    warnings = [w.strip() for w in stderr.splitlines() if w.strip()]
    return HostStatus(host, services, rc, from_cache="read from cache" in stderr,
                      warnings=warnings)


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


class ZimbraControl:
    """Runs zmcontrol through an injected ``run(argv) -> (rc, stdout, stderr)``, as the Zimbra
    user (``su - <run_as> -c`` when running as root), under coreutils' ``timeout``."""

    def __init__(self, run: RunCommand, zmcontrol_path: str = "/opt/zimbra/bin/zmcontrol",
                 run_as: str | None = "zimbra", user: str | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._run = run
        self.zmcontrol_path = zmcontrol_path
        self.run_as = run_as
        self.user = user if user is not None else current_user()
        self._sleep = sleep
        self._clock = clock

    def argv(self, command: str, timeout: int) -> list[str]:
        inner = [self.zmcontrol_path, command]
        if self.run_as and self.user != self.run_as:
            if self.user != "root":
                raise ZimbraError(
                    f"running as {self.user}: zmcontrol needs user {self.run_as}; use become "
                    f"(become_user: {self.run_as}) or run as root")
            inner = ["su", "-", self.run_as, "-c", " ".join(shlex.quote(a) for a in inner)]
        return ["timeout", "--kill-after=30", str(int(timeout))] + inner

    def call(self, command: str, timeout: int) -> tuple[int, str, str]:
        rc, out, err = self._run(self.argv(command, timeout))
        if rc == TIMEOUT_RC or rc == 128 + 9:
            raise ZimbraError(f"zmcontrol {command} did not finish within {timeout} seconds",
                              rc, out, err)
        if rc == 127 or ("No such file or directory" in err and not out):
            raise ZimbraError(f"cannot run {self.zmcontrol_path}: {err.strip()}", rc, out, err)
        return rc, out, err

    def status(self, timeout: int = 300) -> HostStatus:
        rc, out, err = self.call("status", timeout)
        return parse_status(out, err, rc)

    def action(self, command: str, timeout: int) -> tuple[int, str, str]:
        """Run start, stop or restart; failures of the enabled-services lookup raise."""
        if command not in ("start", "stop", "restart"):
            raise ZimbraError(f"unknown zmcontrol command {command}")
        rc, out, err = self.call(command, timeout)
        _failure(out, err, rc)
        return rc, out, err

    def wait_for(self, want_running: bool, timeout: float, status_timeout: int,
                 ignore: list[str] | None = None, interval: float = 2.0) -> HostStatus:
        """Poll status until every service considered is running (or stopped); returns the
        last status, reached or not."""
        deadline = self._clock() + timeout
        while True:
            current = self.status(status_timeout)
            done = current.all_running(ignore) if want_running else current.all_stopped(ignore)
            if done or self._clock() >= deadline:
                return current
            self._sleep(interval)
