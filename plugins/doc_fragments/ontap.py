# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Connection options of the modules that talk to an ONTAP cluster (see ontap_argument_spec()).
    DOCUMENTATION = r"""
options:
  hostname:
    description:
      - Address or name of the ONTAP cluster management interface (the REST API is under C(/api/)).
      - SnapMirror relationships are owned by their B(destination) cluster, so point this at it.
    type: str
    required: true
  port:
    description:
      - HTTPS port of the REST API.
    type: int
    default: 443
  username:
    description:
      - Cluster user for HTTP Basic authentication.
    type: str
    default: admin
  password:
    description:
      - Password of O(username).
    type: str
    required: true
  validate_certs:
    description:
      - Verify the cluster's TLS certificate. Turn off only on a test bench.
      - The environment (C(REQUESTS_CA_BUNDLE), C(https_proxy)) is ignored on purpose, so the CA
        used is O(ca_path) or the system store, and no proxy sits in the way.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the cluster's certificate. Default is the system trust store.
    type: path
  timeout:
    description:
      - Seconds to wait for each HTTP exchange (the connection itself waits at most 5 seconds).
      - The C(netapp-ontap) library retries a failed connection a few times, so an unreachable
        cluster is reported after about six times the connection wait.
    type: float
    default: 30.0
requirements:
  - netapp-ontap (Python library)
"""
