# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS verification is on by default; turning it off must never go unnoticed.

Every module that talks TLS calls :func:`unverified_tls_warnings` on its parameters and
passes each line to ``module.warn``, so the operator sees the risk in the play output and in
AWX job events, whichever nested option turned verification off.
"""

from __future__ import annotations

from typing import Any, List

# OpenLDAP's TLS_REQCERT values that accept a certificate that does not verify.
WEAK_REQCERT = ("never", "allow", "try")

RISK = ("the server's certificate is not verified, so anyone on the network path can "
        "impersonate it and read the credentials sent to it; give ca_path instead")


def unverified_tls_warnings(params: Any, path: str = "") -> List[str]:
    """One warning per option in ``params`` (nested dicts and lists too) that disables verification."""
    warnings: List[str] = []
    if isinstance(params, dict):
        for key, value in params.items():
            where = "%s.%s" % (path, key) if path else key
            if key == "validate_certs" and value is False:
                warnings.append("%s=false: %s." % (where, RISK))
            elif key == "tls_reqcert" and value in WEAK_REQCERT:
                warnings.append("%s=%s: %s." % (where, value, RISK))
            else:
                warnings += unverified_tls_warnings(value, where)
    elif isinstance(params, list):
        for index, value in enumerate(params):
            warnings += unverified_tls_warnings(value, "%s[%d]" % (path, index))
    return warnings
