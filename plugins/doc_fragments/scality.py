# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Connection options of the modules that talk to a Scality RING (see scality_argument_spec()).
    DOCUMENTATION = r"""
options:
  supervisor_url:
    description:
      - Base URL of the Scality Supervisor, for example C(https://supervisor.example.com).
        The REST API is read under C(/api/v0.1/).
      - Without it, only the sproxyd connectors are checked.
    type: str
  supervisor_username:
    description:
      - User for HTTP Basic authentication to the Supervisor. Required with O(supervisor_url).
    type: str
  supervisor_password:
    description:
      - Password of O(supervisor_username). Required with O(supervisor_url).
    type: str
  validate_certs:
    description:
      - Verify the Supervisor's TLS certificate. Turn off only on a test bench.
      - The environment (C(REQUESTS_CA_BUNDLE), C(https_proxy)) is ignored on purpose, so
        the CA used is O(ca_path) or the system store, and no proxy sits in the way.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the Supervisor's certificate. Default is the system
        trust store.
    type: path
  timeout:
    description:
      - Seconds to wait for each HTTP exchange (connection and each read).
    type: float
    default: 10.0
  retries:
    description:
      - How many times a read (C(GET), C(HEAD)) is retried after a connection error or a
        C(502), C(503) or C(504) answer, with a short exponential backoff. Writes are never
        retried blindly.
    type: int
    default: 2
"""
