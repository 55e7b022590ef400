"""The filters that share a step's hosts out over the workers of a play, and gather the results."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.mailops.zimbra_geo.plugins.filter.fanned_out import fanned_out
from ansible_collections.mailops.zimbra_geo.plugins.filter.share import share


@pytest.mark.parametrize("items,workers", [
    ([f"dc1-mbox{i}" for i in range(1, 21)], ["w1", "w2", "w3"]),
    (["a", "b"], ["w1", "w2", "w3", "w4", "w5"]),
    (["a", "b", "c"], ["w1"]),
    ([], ["w1", "w2"]),
])
def test_every_item_lands_in_exactly_one_share_and_shares_are_even(items, workers):
    shares = [share(items, workers, w) for w in workers]
    dealt = [item for s in shares for item in s]
    assert sorted(dealt) == sorted(items)
    assert len(dealt) == len(set(dealt)) or len(items) != len(set(items))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_shares_are_dealt_round_robin_in_order():
    assert share(["a", "b", "c", "d", "e"], ["w1", "w2"], "w1") == ["a", "c", "e"]
    assert share(["a", "b", "c", "d", "e"], ["w1", "w2"], "w2") == ["b", "d"]


def test_a_host_that_is_no_worker_gets_nothing():
    assert share(["a", "b"], ["w1", "w2"], "w3") == []


@pytest.mark.parametrize("items,workers", [("ab", ["w1"]), (["a"], "w1")])
def test_share_wants_lists(items, workers):
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        share(items, workers, "w1")


def loop_result(*items):
    return {"changed": any(i.get("changed") for i in items), "results": list(items), "msg": "All items completed"}


def test_gathers_every_workers_share_in_worker_order():
    hostvars = {
        "w1": {"part": loop_result({"item": "dc1-mbox1", "changed": True}, {"item": "dc1-mbox3", "changed": False})},
        "w2": {"part": loop_result({"item": "dc1-mbox2", "changed": False})},
    }
    out = fanned_out(["w1", "w2"], hostvars, "part")
    assert [r["item"] for r in out["results"]] == ["dc1-mbox1", "dc1-mbox3", "dc1-mbox2"]
    assert out["changed"] is True
    assert out["failures"] == []


def test_nothing_changed_when_no_item_changed():
    hostvars = {"w1": {"part": loop_result({"item": "a", "changed": False})}}
    assert fanned_out(["w1"], hostvars, "part")["changed"] is False


def test_failed_and_unreachable_items_become_named_failures():
    hostvars = {
        "w1": {"part": loop_result({"item": "dc1-mbox1", "failed": True, "msg": "zmcontrol stop failed\n"})},
        "w2": {"part": loop_result({"item": "dc1-mbox2", "unreachable": True, "msg": "ssh: connect refused"})},
        "w3": {"part": loop_result({"item": {"host": "dc2-mbox1", "path": "/opt/zimbra/db"}, "failed": True,
                                    "stderr": "mount: wrong fs type"})},
    }
    out = fanned_out(["w1", "w2", "w3"], hostvars, "part")
    assert out["failures"] == [
        "dc1-mbox1: zmcontrol stop failed",
        "dc1-mbox2: ssh: connect refused",
        "dc2-mbox1:/opt/zimbra/db: mount: wrong fs type",
    ]


def test_a_command_failed_by_its_output_is_named_by_its_last_line():
    # postqueue -p failed by failed_when: no msg, no stderr; the listing's summary says why.
    listing = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n" \
              "4bG7xk1Qz  812 Mon Nov 30 03:12:09  a@example.test\n\n-- 1 Kbytes in 1 Request.\n"
    hostvars = {"w1": {"part": loop_result({"item": "dc1-mta1", "failed": True, "msg": "", "stderr": "",
                                            "stdout": listing})},
                "w2": {"part": loop_result({"item": "dc1-mta2", "failed": True})}}
    assert fanned_out(["w1", "w2"], hostvars, "part")["failures"] == [
        "dc1-mta1: -- 1 Kbytes in 1 Request.", "dc1-mta2: failed"]


def test_a_label_names_the_item_when_the_loop_gave_one():
    hostvars = {"w1": {"part": loop_result({"item": {"host": "h"}, "_ansible_item_label": "h:/x <- svm:vol",
                                            "failed": True, "msg": "boom"})}}
    assert fanned_out(["w1"], hostvars, "part")["failures"] == ["h:/x <- svm:vol: boom"]


def test_workers_with_an_empty_share_or_a_skipped_task_add_nothing():
    hostvars = {
        "w1": {"part": {"skipped": True, "changed": False, "results": [], "msg": "No items in the list"}},
        "w2": {"part": {"skipped": True, "changed": False, "skip_reason": "Conditional result was False"}},
        "w3": {},
    }
    out = fanned_out(["w1", "w2", "w3", "gone"], hostvars, "part")
    assert out == {"results": [], "changed": False, "failures": []}


def test_workers_must_be_a_list():
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        fanned_out("w1", {}, "part")
