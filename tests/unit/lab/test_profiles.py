"""Latency profiles and the failover's critical path (lab/profiles.py): pure arithmetic on
lab/topology.yml, no lab needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab import profiles
from lab.core import Lab

TOPOLOGY = yaml.safe_load((Path(__file__).resolve().parents[3] / "lab" / "topology.yml").read_text())


def test_every_profile_names_known_processes_and_ontap_latencies():
    from lab.ontap.state import Latencies

    known = {p for role in ("mailbox", "mta", "proxy") for p in profiles.role_processes(role)} | {"default"}
    for name, profile in TOPOLOGY["profiles"].items():
        assert set(profile["ontap"]) <= set(vars(Latencies())), name
        for role, table in profile["zimbra"].items():
            assert role in {"mailbox", "mta", "proxy", "common"}, (name, role)
            assert set(table) <= known, (name, role, set(table) - known)


def test_role_processes_follow_zimbra_start_order():
    assert profiles.role_processes("mailbox") == ["zmconfigd", "mysqld", "mailboxd", "zmstat"]
    assert profiles.role_processes("proxy") == ["zmconfigd", "memcached", "nginx", "zmstat"]
    assert "clamd" in profiles.role_processes("mta")


def test_default_profile_keeps_the_values_the_tests_are_written_against():
    topo = profiles.resolve(TOPOLOGY)
    assert topo["profile"] == "lab"
    assert topo["ontap"]["latencies"]["transition"] == 0.2
    assert topo["zimbra"]["timings"]["mysqld"] == {"start": 0.3, "stop": 1.0}


def test_time_scale_shrinks_durations_and_speeds_up_the_link():
    full = profiles.resolve(TOPOLOGY, "realistic")
    tenth = profiles.resolve(TOPOLOGY, "realistic", time_scale=0.1)
    assert tenth["ontap"]["latencies"]["transition"] == pytest.approx(full["ontap"]["latencies"]["transition"] / 10)
    rate = full["ontap"]["latencies"]["transfer_rate"]
    assert tenth["ontap"]["latencies"]["transfer_rate"] == pytest.approx(rate * 10)
    assert tenth["zimbra"]["timings"]["mailboxd"]["start"] == pytest.approx(
        full["zimbra"]["timings"]["mailboxd"]["start"] / 10)
    assert profiles.critical_path_seconds(tenth) == pytest.approx(profiles.critical_path_seconds(full) / 10, rel=1e-3)


@pytest.mark.parametrize("kwargs", [{"profile": "nope"}, {"time_scale": 0}, {"time_scale": -1},
                                    {"mailbox_servers": 0}, {"mailbox_servers": 151}])
def test_bad_choices_are_refused(kwargs):
    with pytest.raises(profiles.ProfileError):
        profiles.resolve(TOPOLOGY, **kwargs)


def test_critical_path_of_realistic_adds_the_serial_waits():
    topo = profiles.resolve(TOPOLOGY, "realistic")
    steps = {s.step: s.seconds for s in profiles.critical_path(topo)}
    z = topo["zimbra"]["timings"]
    lat = topo["ontap"]["latencies"]
    mailbox_start = sum(z.get(p, z["default"])["start"] for p in ("zmconfigd", "mysqld", "mailboxd", "zmstat"))
    mailbox_stop = sum(z.get(p, z["default"])["stop"] for p in ("zmconfigd", "mysqld", "mailboxd", "zmstat"))
    # The mailbox is the slowest host to start: the start step waits for it, not for the sum of hosts.
    assert steps["start_new_site"] == pytest.approx(mailbox_start)
    assert steps["stop_old_mailboxes"] == pytest.approx(mailbox_stop)
    # Quiesce and break: each a job, then the state lands.
    assert steps["break_mirrors"] == pytest.approx(2 * (lat["job_start"] + lat["transition"]))
    # The update carries the changed data over the link, or the shortest transfer if longer.
    transfer = max(lat["transfer_min"], lat["changed_bytes"] / lat["transfer_rate"])
    assert steps["final_update"] == pytest.approx(lat["job_start"] + transfer)
    # Zimbra dominates: a mailbox stop and start is most of a realistic failover.
    total = profiles.critical_path_seconds(topo)
    assert (mailbox_start + mailbox_stop) / total > 0.7
    assert 120 < total < 400


def test_critical_path_does_not_grow_with_the_platform_and_fast_is_near_zero():
    one = profiles.critical_path_seconds(profiles.resolve(TOPOLOGY, "realistic", mailbox_servers=1))
    twenty = profiles.critical_path_seconds(profiles.resolve(TOPOLOGY, "realistic", mailbox_servers=20))
    assert one == twenty  # every server and relationship in parallel
    assert profiles.critical_path_seconds(profiles.resolve(TOPOLOGY, "fast")) < 1.0


def test_a_large_site_gets_addresses_clear_of_the_other_hosts():
    lab = Lab("zgunit", topology=profiles.resolve(TOPOLOGY, "fast", mailbox_servers=20))
    addresses = [h.address for h in lab.hosts.values()]
    assert len(addresses) == len(set(addresses))
    assert len(lab.hosts_with("mailbox", "dc1")) == 20
    assert lab.hosts["dc1-mbox1"].address == "127.10.1.21"
    assert lab.hosts["dc1-mbox20"].address == "127.10.1.120"


def test_table_lists_every_step_and_the_total():
    text = profiles.format_table(profiles.critical_path(profiles.resolve(TOPOLOGY, "realistic")))
    assert "stop_old_mailboxes" in text and "protect_new_site" in text
    assert text.splitlines()[-1].startswith("total")
