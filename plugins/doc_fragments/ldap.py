# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Connection options of the modules that talk to OpenLDAP (see ldap_argument_spec()).
    DOCUMENTATION = r"""
options:
  bind_method:
    description:
      - How to authenticate. V(simple) binds with O(bind_dn) and O(bind_pw).
      - V(sasl_external) binds with SASL EXTERNAL, which makes sense over C(ldapi://) as root
        (the peer credentials are the identity) or with a TLS client certificate.
    type: str
    default: simple
    choices: [simple, sasl_external]
  bind_dn:
    description:
      - DN to bind as with O(bind_method=simple), for example C(cn=config) to manage the
        configuration or the rootDN of the replicated database to read and write entries.
    type: str
  bind_pw:
    description:
      - Password of O(bind_dn).
    type: str
  start_tls:
    description:
      - Protect C(ldap://) connections with StartTLS, failing if the server refuses it.
        C(ldaps://) is TLS from the start and C(ldapi://) is local, so it does not apply to them.
    type: bool
    default: true
  validate_certs:
    description:
      - Verify the server's certificate and name. Turn off only in a throw-away test.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that issued the servers' certificates. Without it, the system's
        trust store is used.
    type: path
  connect_timeout:
    description:
      - Seconds to wait for a TCP connection to a server before reporting it unreachable.
    type: float
    default: 5.0
  timeout:
    description:
      - Seconds to wait for the answer to each LDAP operation.
    type: float
    default: 30.0
requirements:
  - ldap3 >= 2.8
"""
