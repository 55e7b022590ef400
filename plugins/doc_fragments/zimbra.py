# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Options of the modules that run Zimbra's tools on the host (see zimbra_argument_spec()).
    DOCUMENTATION = r"""
options:
  zmcontrol_path:
    description:
      - Path of Zimbra's C(zmcontrol) on the managed host.
    type: path
    default: /opt/zimbra/bin/zmcontrol
  run_as:
    description:
      - The Zimbra user. Zimbra's tools refuse to run as anyone else.
      - When the module runs as root it calls C(su - <run_as> -c ...); when it already runs
        as this user (C(become_user)), it calls the tool directly; as any other user it fails
        before running anything.
    type: str
    default: zimbra
"""
