"""Benchmark: break 1, 10 and 100 SnapMirror relationships on the ONTAP emulator.

    python bench/bench_snapmirror.py [--sizes 1,10,100] [--transition 0.2]

For each size it resets the emulated clusters (every relationship ``snapmirrored``), then
times ``ansible-playbook`` running

* ``mailops.zimbra_geo.snapmirror`` once, with every relationship in one task, and
* the same module once per relationship (a loop: one task execution per relationship),
* the anchor, ``netapp.ontap.na_ontap_snapmirror`` (from the ``ansible`` package), once per
  relationship, unmodified (it quiesces, sleeps 10 s, then breaks); only for
  ``--anchor-sizes`` (default 1,10: at ~12 s per relationship, 100 would take 20 minutes),

and prints wall times and ratios. Numbers only: nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.ontap.testing import EmulatorPair  # noqa: E402 - after the path set-up


def playbook(pair: EmulatorPair, paths: list[str], per_relationship: bool, anchor: bool = False) -> list[dict]:
    task: dict = {"name": "break", "mailops.zimbra_geo.snapmirror": {"state": "broken_off"}}
    if anchor:
        task = {
            "name": "break",
            "loop": paths,
            "netapp.ontap.na_ontap_snapmirror": {
                "hostname": f"127.0.0.1:{pair.dc2.port}",
                "https": True,
                "validate_certs": False,
                "username": "admin",
                "password": pair.password,
                "use_rest": "always",
                "relationship_state": "broken",
                "update": False,
                "validate_source_path": False,
                "source_endpoint": {"path": "{{ item | replace('svm_dc2', 'svm_dc1') }}"},
                "destination_endpoint": {"path": "{{ item }}"},
            },
        }
    elif per_relationship:
        task["mailops.zimbra_geo.snapmirror"]["relationships"] = ["{{ item }}"]
        task["loop"] = paths
    else:
        task["mailops.zimbra_geo.snapmirror"]["relationships"] = paths
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {
                "group/mailops.zimbra_geo.zimbra_geo": {
                    "hostname": "127.0.0.1",
                    "port": pair.dc2.port,
                    "password": pair.password,
                    "ca_path": str(pair.ca),
                }
            },
            "tasks": [task],
        }
    ]


def run(pair: EmulatorPair, paths: list[str], per_relationship: bool, anchor: bool = False) -> float:
    pair.admin(pair.dc2, "POST", "reset")
    pair.admin(pair.dc1, "POST", "reset")
    path = pair.workdir / "bench.yml"
    path.write_text(yaml.safe_dump(playbook(pair, paths, per_relationship, anchor)))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
    )
    start = time.monotonic()
    proc = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            "localhost,",
            "-c",
            "local",
            str(path),
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    took = time.monotonic() - start
    stats = json.loads(proc.stdout)["stats"]["localhost"]
    if proc.returncode or stats.get("failures"):
        raise SystemExit(f"playbook failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    # The anchor returns when its break job succeeds, before the state lands: give it a moment.
    deadline = time.monotonic() + 5
    while True:
        states = pair.api(pair.dc2, "GET", "snapmirror/relationships", params={"fields": "state"}).json()["records"]
        broken = sum(1 for r in states if r["state"] == "broken_off")
        if broken == len(paths) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if broken != len(paths):
        raise SystemExit(f"expected {len(paths)} broken relationships, found {broken}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="1,10,100")
    parser.add_argument("--transition", type=float, default=0.2, help="seconds until a state lands")
    parser.add_argument("--anchor-sizes", default="1,10", help="sizes also run with na_ontap_snapmirror ('' = none)")
    parser.add_argument("--loop-sizes", default="1,10,100", help="sizes also run one task per relationship")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    volumes = tuple(f"v{i:03d}" for i in range(max(sizes)))
    latencies = {"job_start": 0.05, "transition": args.transition, "transfer_min": 0.2}
    with tempfile.TemporaryDirectory() as tmp, EmulatorPair(Path(tmp), volumes=volumes, latencies=latencies) as pair:
        run(pair, [f"svm_dc2:{volumes[0]}"], per_relationship=False)  # warm-up, not timed
        rows = []
        for n in sizes:
            paths = [f"svm_dc2:{v}" for v in volumes[:n]]
            one = run(pair, paths, per_relationship=False)
            each = run(pair, paths, per_relationship=True) if str(n) in args.loop_sizes.split(",") else None
            anchor = run(pair, paths, True, anchor=True) if str(n) in args.anchor_sizes.split(",") else None
            rows.append((n, one, each, anchor))
    base = rows[0][1]
    print(f"break N relationships (quiesce + break each), emulator transition latency {args.transition} s")
    print(
        f"{'N':>5} {'one task (s)':>13} {'vs N=' + str(rows[0][0]):>9} {'task per rel (s)':>17} "
        f"{'per-rel / one':>14} {'na_ontap_snapmirror per rel (s)':>32} {'anchor / one':>13}"
    )
    for n, one, each, anchor in rows:
        a = f"{anchor:>32.2f} {anchor / one:>12.1f}x" if anchor is not None else f"{'not run':>32} {'':>13}"
        e = f"{each:>17.2f} {each / one:>13.1f}x" if each is not None else f"{'not run':>17} {'':>14}"
        print(f"{n:>5} {one:>13.2f} {one / base:>8.2f}x {e} {a}")


if __name__ == "__main__":
    main()
