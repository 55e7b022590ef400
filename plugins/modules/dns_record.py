# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dns_record
short_description: Set DNS record sets in several views of a split-horizon zone
version_added: 0.1.0
author:
  - zimbra_geo maintainers (@mailops)
description:
  - Makes the record set (RRset) of one name and type the same in one or more views of a
    split-horizon zone, with RFC 2136 dynamic updates signed with each view's TSIG key, and
    checks the result by a signed query per view.
  - The whole RRset is replaced, as an operator expects when setting the MX or an address;
    values not listed are removed. Nothing is sent when a view already holds exactly the values and TTL.
  - Every view is read (and checked to serve the zone) before any view is changed, so a wrong
    key or a missing zone in one view fails the task with no change anywhere.
  - Check mode sends no update at all; it only reads, with signed queries, and predicts.
  - With O(records), many record sets are set in one task (a failover moves every service
    name at once); every record set is read in every view it concerns before any is changed.
extends_documentation_fragment:
  - mailops.zimbra_geo.dns
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  record:
    description:
      - The owner name. C(@) is the zone apex; a name ending with a dot is absolute; a name
        that ends with the zone name is taken as written; any other name is relative to the
        zone of each view (C(mail) is C(mail.example.test.) in zone C(example.test)).
      - One of O(record) and O(records) is required.
    type: str
  type:
    description:
      - Record type. Required with O(record).
    type: str
    choices: [A, AAAA, CNAME, MX, TXT]
  values:
    description:
      - The records of the set, in zone-file syntax (C(10 mx1.example.test) for MX).
      - Host names inside values (CNAME target, MX exchange) are fully qualified; the trailing
        dot is optional.
      - TXT values are plain text, quoted and split in 255-octet strings by the module; a
        value that starts with a double quote is taken as zone-file syntax.
      - Required with O(state=present); not allowed with O(state=absent), which removes the
        whole RRset.
    type: list
    elements: str
  ttl:
    description:
      - TTL of the record set, in seconds. A changed TTL alone is a change.
    type: int
    default: 3600
  state:
    description:
      - V(present) makes the RRset exactly O(values) with O(ttl) in every view; V(absent)
        removes the RRset of O(type) at O(record) from every view.
    type: str
    default: present
    choices: [present, absent]
  records:
    description:
      - Several record sets at once, each with the options of a single one; O(views) gives
        the servers and keys, and each entry may name the views it goes to.
      - Mutually exclusive with O(record).
    type: list
    elements: dict
    suboptions:
      record:
        description: The owner name, as O(record).
        type: str
        required: true
      type:
        description: Record type.
        type: str
        required: true
        choices: [A, AAAA, CNAME, MX, TXT]
      values:
        description: The records of the set, as O(values).
        type: list
        elements: str
      ttl:
        description: TTL of the record set, in seconds.
        type: int
        default: 3600
      state:
        description: As O(state).
        type: str
        default: present
        choices: [present, absent]
      views:
        description: The names of the views (from O(views)) this record set goes to; all when omitted.
        type: list
        elements: str
notes:
  - A CNAME cannot coexist with other data at the same name; the module refuses, before any
    change, to add data next to an existing CNAME, and a server that ignores a conflicting
    update is caught by the verification query.
seealso:
  - module: community.general.nsupdate
    description: Single-server updates; it sends updates even in check mode and shows no diff.
"""

EXAMPLES = r"""
- name: Point the MX at dc2 in both views
  mailops.zimbra_geo.dns_record:
    record: "@"
    type: MX
    values:
      - 10 mta1.dc2.example.test
    ttl: 300
    views:
      - name: internal
        server: 127.10.0.53
        zone: example.test
        key_name: k-internal
        key_secret: "{{ tsig_internal }}"
      - name: external
        server: 127.10.0.53
        zone: example.test
        key_name: k-external
        key_secret: "{{ tsig_external }}"

- name: Mail host address, each view from the inventory
  mailops.zimbra_geo.dns_record:
    record: mail
    type: A
    values: [127.10.2.41]
    ttl: 60
    views: "{{ zimbra_geo_dns_views.values() | list }}"

- name: An SPF record
  mailops.zimbra_geo.dns_record:
    record: "@"
    type: TXT
    values: ["v=spf1 mx -all"]
    views: "{{ dns_views }}"

- name: Every service name at the new site, the mailbox names in the internal view only
  mailops.zimbra_geo.dns_record:
    views: "{{ zimbra_geo_dns_views.values() | list }}"
    records:
      - {record: mail, type: A, ttl: 300, values: [127.10.2.31], views: [internal]}
      - {record: mail, type: A, ttl: 300, values: [127.20.2.31], views: [external]}
      - {record: mbox1, type: A, ttl: 300, values: [127.10.2.21], views: [internal]}

- name: Remove the old alias everywhere
  mailops.zimbra_geo.dns_record:
    record: webmail-old
    type: CNAME
    state: absent
    views: "{{ dns_views }}"
"""

RETURN = r"""
record:
  description: The record name as given.
  returned: when O(record) is given
  type: str
  sample: mail
type:
  description: The record type.
  returned: when O(record) is given
  type: str
  sample: A
records:
  description: One entry per record set of O(records), each with RV(record), RV(type) and RV(views).
  returned: when O(records) is given
  type: list
  elements: dict
  sample: [{"record": "mail", "type": "A", "changed": true, "views": []}]
views:
  description: What was found and what was made (or, in check mode, would be made) in each view.
  returned: when O(record) is given
  type: list
  elements: dict
  contains:
    name:
      description: The view's label.
      type: str
      sample: internal
    server:
      description: The server of the view.
      type: str
      sample: 127.10.0.53
    zone:
      description: The zone, absolute.
      type: str
      sample: example.test.
    fqdn:
      description: The absolute owner name in this view.
      type: str
      sample: mail.example.test.
    changed:
      description: Whether this view was (or in check mode would be) changed.
      type: bool
      sample: true
    action:
      description: The update sent (or that would be sent) to this view.
      type: str
      choices: [replace, delete, none]
      sample: replace
    before:
      description: The RRset before, or an empty dict when there was none.
      type: dict
      sample: {"ttl": 300, "values": ["127.10.1.41"]}
    after:
      description:
        - The RRset after (read back from the server unless in check mode), or an empty dict when there
          is none.
      type: dict
      sample: {"ttl": 300, "values": ["127.10.2.41"]}
    verified:
      description:
        - Whether a signed query after the update found exactly the desired RRset (false in check mode
          and when nothing was sent).
      type: bool
      sample: true
diff:
  description: One before/after entry per view, in zone-file lines, when diff mode is on.
  returned: when diff mode is on
  type: list
  elements: dict
  sample:
    - before_header: "mail.example.test. A (view internal)"
      after_header: "mail.example.test. A (view internal)"
      before: ""
      after: "mail.example.test. 300 IN A 127.10.2.41\n"
"""

from typing import TYPE_CHECKING

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._dns import (
    DNSPYTHON_IMPORT_ERROR,
    HAS_DNSPYTHON,
    DnsClient,
    DnsError,
    RecordSet,
    View,
    check_distinct_views,
    describe,
    dns_argument_spec,
    in_zone_targets,
    normalize_values,
    record_fqdn,
    rrset_action,
    rrset_diff,
)

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable


class DnsRecordRunner:
    """Read every view, decide, update the views that differ, verify them.

    The client factory is injected so unit tests can prove that check mode sends no update.
    """

    def __init__(
        self, params: dict, check_mode: bool, diff_mode: bool, client_factory: Callable[[View, float], DnsClient]
    ) -> None:
        self.params = params
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        self.client_factory = client_factory

    def validate(self) -> tuple:
        params = self.params
        rdtype = params["type"].upper()
        if params["state"] == "absent":
            if params.get("values"):
                raise DnsError(
                    f"values are not used with state=absent, which removes the whole {rdtype} RRset; "
                    "to keep some records, use state=present with the values to keep",
                    kind="input",
                )
            values = None
        else:
            if not params.get("values"):
                raise DnsError("state=present needs at least one value", kind="input")
            values = normalize_values(rdtype, params["values"])
        if not 0 <= params["ttl"] <= 2147483647:
            raise DnsError("ttl must be between 0 and 2147483647 seconds", kind="input")
        views = [View.from_params(view) for view in params["views"]]
        if not views:
            raise DnsError("views must list at least one view", kind="input")
        check_distinct_views(views)
        desired = RecordSet(ttl=params["ttl"], values=values) if values is not None else None
        return rdtype, desired, views

    @staticmethod
    def apply(client: DnsClient, view: View, fqdn: str, rdtype: str, desired: RecordSet | None) -> RecordSet | None:
        """Send the update, then read the RRset back with a signed query: it must match."""
        client.update(fqdn, rdtype, desired)
        after = client.read_rrset(fqdn, rdtype)
        if after != desired:
            raise DnsError(
                f"the server accepted the update but now answers {describe(after)} instead of "
                f"{describe(desired)} for {fqdn} {rdtype}; another change may have raced this one, "
                "or the server ignored the update (a CNAME conflicts with other data at the same name)",
                view=view.name,
                kind="verify",
            )
        return after

    def run(self) -> dict:
        return self.execute(self.plan())

    def plan(self) -> tuple:
        """Read every view and decide; raises before any change."""
        rdtype, desired, views = self.validate()
        plans = []
        # Everything is read first: a failure in any view stops the task before any change.
        for view in views:
            try:
                fqdn = record_fqdn(self.params["record"], view.zone)
            except DnsError as exc:
                raise DnsError(exc.detail, view=view.name, kind="input") from None
            client = self.client_factory(view, self.params["dns_timeout"])
            client.check_zone()
            current = client.read_rrset(fqdn, rdtype)
            if desired is not None and rdtype != "CNAME":
                cname = client.find_cname(fqdn)
                if cname is not None:
                    raise DnsError(
                        f"{fqdn} already has a CNAME ({', '.join(cname.values)}); a {rdtype} record "
                        "cannot be added next to it: remove the CNAME first (type=CNAME state=absent)",
                        view=view.name,
                        kind="input",
                    )
            action = rrset_action(current, desired)
            if action == "replace":
                for target in in_zone_targets(rdtype, desired.values, view.zone):
                    if not client.has_address(target):
                        raise DnsError(
                            f"{rdtype} target {target} has no A or AAAA record in this view; the "
                            "server would refuse the update: add the address record first",
                            view=view.name,
                            kind="input",
                        )
            plans.append((view, client, fqdn, current, action))
        return rdtype, desired, plans

    def execute(self, planned: tuple) -> dict:
        rdtype, desired, plans = planned
        results = []
        diffs = []
        for view, client, fqdn, current, action in plans:
            after = current if action is None else desired
            verified = False
            if action is not None and not self.check_mode:
                try:
                    after = self.apply(client, view, fqdn, rdtype, desired)
                except DnsError as exc:
                    done = [r["name"] for r in results if r["changed"]]
                    if done:
                        exc.args = (f"{exc} (views already changed: {', '.join(done)}; run again once fixed)",)
                    raise
                verified = True
            results.append(
                {
                    "name": view.name,
                    "server": view.server,
                    "zone": view.zone,
                    "fqdn": fqdn,
                    "changed": action is not None,
                    "action": action or "none",
                    "before": current.to_dict() if current else {},
                    "after": after.to_dict() if after else {},
                    "verified": verified,
                }
            )
            if self.diff_mode:
                diffs.append(rrset_diff(view.name, fqdn, rdtype, current, after))
        result = {
            "changed": any(r["changed"] for r in results),
            "record": self.params["record"],
            "type": rdtype,
            "views": results,
        }
        if self.diff_mode:
            result["diff"] = diffs
        return result


TYPES = ["A", "AAAA", "CNAME", "MX", "TXT"]


def argument_spec() -> dict:
    spec = dns_argument_spec()
    spec.update(
        record={"type": "str"},
        type={"type": "str", "choices": TYPES},
        values={"type": "list", "elements": "str"},
        ttl={"type": "int", "default": 3600},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
        records={
            "type": "list",
            "elements": "dict",
            "options": {
                "record": {"type": "str", "required": True},
                "type": {"type": "str", "required": True, "choices": TYPES},
                "values": {"type": "list", "elements": "str"},
                "ttl": {"type": "int", "default": 3600},
                "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
                "views": {"type": "list", "elements": "str"},
            },
        },
    )
    return spec


def run_many(params: dict, check_mode: bool, diff_mode: bool, client_factory) -> dict:
    """Every record set of `records`: all read and decided first, then the changes sent."""
    # A view's label is its name, else its key's name (as View.from_params labels it).
    known = {view.get("name") or view["key_name"] for view in params["views"]}
    runners = []
    for entry in params["records"]:
        wanted = entry.get("views")
        if wanted and set(wanted) - known:
            raise DnsError(f"record {entry['record']} names views that are not in views: "
                           f"{', '.join(sorted(set(wanted) - known))}", kind="input")
        views = [v for v in params["views"] if not wanted or (v.get("name") or v["key_name"]) in wanted]
        sub = dict(params, record=entry["record"], type=entry["type"], values=entry.get("values"),
                   ttl=entry["ttl"], state=entry["state"], views=views)
        runners.append(DnsRecordRunner(sub, check_mode, diff_mode, client_factory))
    plans = [runner.plan() for runner in runners]
    results = []
    for index, runner in enumerate(runners):
        try:
            results.append(runner.execute(plans[index]))
        except DnsError as exc:
            done = [f"{r['record']} {r['type']}" for r in results if r["changed"]]
            if done:
                exc.args = (f"{exc} (record sets already changed: {', '.join(done)}; run again once fixed)",)
            raise
    result = {"changed": any(r["changed"] for r in results),
              "records": [{k: v for k, v in r.items() if k != "diff"} for r in results]}
    if diff_mode:
        result["diff"] = [d for r in results for d in r.get("diff", [])]
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_one_of=[("record", "records")],
        mutually_exclusive=[("record", "records")],
        required_by={"record": "type"},
    )
    if not HAS_DNSPYTHON:
        module.fail_json(msg=missing_required_lib("dnspython"), exception=DNSPYTHON_IMPORT_ERROR)
    try:
        if module.params["records"] is not None:
            result = run_many(module.params, module.check_mode, module._diff, DnsClient)
        else:
            result = DnsRecordRunner(module.params, module.check_mode, module._diff, DnsClient).run()
    except DnsError as exc:
        module.fail_json(msg=str(exc), view=exc.view, error_kind=exc.kind)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
