# -*- coding: utf-8 -*-
# Copyright (c) zimbra_geo contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin: write a report's files on the controller, in the controller's own process.

A report is the run's output on the controller (JSON for machines, HTML for people, under a
stamped name and a "latest" one), not a change to the platform. Written here, it costs no
module run: the copy and template actions it replaces ran a stat and a copy module for each of
the four files, about a second of CPU per playbook run.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.action import ActionBase

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _write(path: str, data: bytes, mode: int) -> bool:
    """Write `data` to `path` atomically; False when the file already holds exactly that."""
    try:
        with open(path, "rb") as handle:
            if handle.read() == data:
                if os.stat(path).st_mode & 0o7777 != mode:
                    os.chmod(path, mode)
                return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("dir", "names", "content", "mode"))
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Dict[str, Any] | None = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        args = self._task.args
        directory = args.get("dir")
        names = args.get("names")
        content = args.get("content")
        mode = args.get("mode", "0644")
        if not isinstance(directory, str) or not directory:
            raise AnsibleActionFail("dir must be the path of the report directory")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise AnsibleActionFail("names must be a non-empty list of file names without extension")
        for name in names:
            if not set(name) <= _NAME_CHARS or name.startswith("."):
                raise AnsibleActionFail("names: %r is not a plain file name (letters, digits, - _ .)" % name)
        if not isinstance(content, dict) or not content:
            raise AnsibleActionFail("content must map each extension (json, html, ...) to the file's text")
        for ext in content:
            if not isinstance(ext, str) or not ext.isalnum():
                raise AnsibleActionFail("content: %r is not a file extension" % (ext,))
        try:
            mode_bits = int(str(mode), 8)
        except ValueError:
            raise AnsibleActionFail("mode must be an octal string such as '0644', not %r" % (mode,)) from None

        # A relative directory is the caller's: taken from where ansible-playbook runs.
        directory = os.path.abspath(os.path.expanduser(directory))
        paths = ["%s/%s.%s" % (directory, name, ext) for name in names for ext in content]
        result.update(changed=False, dir=directory, files=paths)
        if self._task.check_mode:
            result["msg"] = "check mode: %d files not written" % len(paths)
            return result
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            changed = False
            for name in names:
                for ext, text in content.items():
                    data = to_bytes(to_text(text), errors="surrogate_or_strict")
                    changed = _write("%s/%s.%s" % (directory, name, ext), data, mode_bits) or changed
        except OSError as exc:
            raise AnsibleActionFail("cannot write the report in %s: %s" % (directory, exc)) from None
        result["changed"] = changed
        result["msg"] = "wrote %d files in %s" % (len(paths), directory)
        return result
