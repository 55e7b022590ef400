"""The Zimbra stand-in of the lab.

``lab.zimbra.standin`` is what runs on a Zimbra host (``zmcontrol``, the control scripts, the
MTA and mailbox daemons, ``zmmailbox``): the installer copies it into the host's private
``/opt/zimbra`` and it runs there as user ``zimbra`` with the system Python, importing nothing
from the rest of the lab. ``lab.zimbra.install`` is that installer, ``lab.zimbra.service`` the
lab Service that calls it on each mailbox, MTA and proxy host.
"""
