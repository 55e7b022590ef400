"""Runtime of the Zimbra stand-in: what Zimbra's ``/opt/zimbra/bin`` tools do, closely enough
that automation written for Zimbra drives it unchanged.

Self-contained on purpose: only relative imports, the standard library and the Debian
packages ``python3-aiosmtpd``, ``python3-ldap3``, ``python3-requests``, ``python3-dnspython``.
"""
