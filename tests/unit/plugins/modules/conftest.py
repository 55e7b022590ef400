"""Every module test runs main() in pytest's process, as a module does on its host."""

from __future__ import annotations

import pytest
from ansible.module_utils import _internal


@pytest.fixture(autouse=True)
def run_as_a_module(monkeypatch: pytest.MonkeyPatch) -> None:
    # Once anything of the controller's (ansible.errors, a filter plugin's test) is imported in
    # this process, AnsibleModule.warn() would print to the controller's display instead of
    # returning the warning with the module's result, which is what these tests read.
    monkeypatch.setattr(_internal, "is_controller", False)
