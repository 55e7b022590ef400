"""Entry point of every stand-in tool: ``python -m <package> TOOL ARGS...``.

The installed ``/opt/zimbra/bin/<tool>`` wrappers call this with their own name.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: TOOL [ARGS...]\n")
        return 2
    tool, args = argv[0], argv[1:]
    if tool == "zmcontrol":
        from . import zmcontrol

        return zmcontrol.main(args)
    if tool == "zmmailbox":
        from . import zmmailbox

        return zmmailbox.main(args)
    if tool == "zmprov":
        from . import zmprov

        return zmprov.main(args)
    if tool == "zmlocalconfig":
        from . import config, localconfig

        return localconfig.main(config.zimbra_home(), args)
    if tool == "postqueue":
        from . import config, mta

        return mta.postqueue(config.load(), args)
    if tool == "kill-all":
        from . import config, proc

        print(" ".join(proc.kill_all(config.load())))
        return 0
    if tool == "daemon":
        from . import daemon

        return daemon.main(args)
    from . import config, ctl

    if tool in config.UNIT_CTL or tool in config.GROUP_CTL:
        return ctl.main(tool, args)
    sys.stderr.write(f"unknown tool {tool}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
