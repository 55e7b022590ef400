# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Connection options of the modules that talk to DNS views (see dns_argument_spec()).
    DOCUMENTATION = r"""
options:
  views:
    description:
      - The views to work on, one entry per view. A zone served in two views is two zones
        on the server; the TSIG key is what selects the view, so each entry needs the key
        of its own view.
      - Every query and update is signed with the entry's key. Two entries with the same
        server, zone and key name would reach the same view and are rejected.
      - With the collection's inventory, O(views) can be written
        C("{{ zimbra_geo_dns_views.values() | list }}") when each view there carries a
        C(name).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - A label for the view, used in messages, results and diffs (for example
            C(internal)). It is not sent to the server.
          - Defaults to O(views[].key_name).
        type: str
      server:
        description:
          - Address or host name of the authoritative DNS server (the primary that accepts
            updates).
        type: str
        required: true
      port:
        description:
          - DNS port of the server.
        type: int
        default: 53
      zone:
        description:
          - The zone, as served in this view (for example C(example.test)). Always given and
            never discovered, because discovery by SOA lookup does not work across views.
        type: str
        required: true
      key_name:
        description:
          - Name of the TSIG key that selects this view and may update the zone in it.
        type: str
        required: true
      key_algorithm:
        description:
          - TSIG algorithm of the key.
        type: str
        default: hmac-sha256
        choices: [hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224, hmac-sha1, hmac-md5]
      key_secret:
        description:
          - The key's secret, base64, as in the C(secret) of the key statement in
            C(named.conf).
        type: str
        required: true
      protocol:
        description:
          - Transport for queries and updates. TCP gives an immediate, clear error when
            nothing listens on the port; UDP only times out.
        type: str
        default: tcp
        choices: [tcp, udp]
  dns_timeout:
    description:
      - Seconds to wait for each answer from a DNS server.
    type: float
    default: 10.0
requirements:
  - dnspython >= 2.0
"""
