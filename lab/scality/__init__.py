"""Scality RING emulator: a Supervisor REST API and one sproxyd connector per site.

The state machine (object placement, rebuild, faults) lives in :mod:`lab.scality.store` and
:mod:`lab.scality.faults`; :mod:`lab.scality.sproxyd` and :mod:`lab.scality.supervisor` are
thin Flask applications over it. See the "Scality RING emulator" section of lab/README.md.
"""
