"""`python -m lab`: the local two-datacenter lab."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import click
import yaml

from lab import lifecycle
from lab.core import DEFAULT_NAME, REPO, Lab, LabError

TOPOLOGY = REPO / "lab" / "topology.yml"


def _progress(msg: str) -> None:
    click.echo(f"[lab] {msg}", err=True)


class LabGroup(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except LabError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=LabGroup)
@click.option("--name", envvar="ZG_LAB_NAME", default=DEFAULT_NAME, show_default=True,
              help="Which lab: several can run side by side (namespaces <name>-*).")
@click.pass_context
def cli(ctx: click.Context, name: str) -> None:
    """The local two-datacenter lab: real slapd, named and SSH hosts in Linux namespaces."""
    if ctx.invoked_subcommand == "critical-path":
        return  # arithmetic on the topology file: no lab, no root
    if os.geteuid() != 0:
        raise click.ClickException("the lab needs root (it creates network namespaces)")
    ctx.obj = Lab(name)


def _topology(profile: str | None, time_scale: float | None, mailbox_servers: int | None) -> dict:
    from lab import profiles

    try:
        return profiles.resolve(yaml.safe_load(TOPOLOGY.read_text()), profile, time_scale, mailbox_servers)
    except profiles.ProfileError as exc:
        raise click.BadParameter(str(exc)) from exc


_profile_options = [
    click.option("--profile", envvar="ZG_LAB_PROFILE", default=None,
                 help="Latency profile from lab/topology.yml: lab (default), fast, realistic."),
    click.option("--time-scale", envvar="ZG_LAB_TIME_SCALE", type=float, default=None,
                 help="Multiply every emulated wait of the profile (e.g. 0.1 for a quick realistic run)."),
    click.option("--mailbox-servers", envvar="ZG_LAB_MAILBOX_SERVERS", type=click.IntRange(1, 150), default=None,
                 help="Mailbox servers per site (default: the topology's, 1)."),
]


def profile_options(fn):
    for option in reversed(_profile_options):
        fn = option(fn)
    return fn


@cli.command()
@profile_options
@click.pass_context
def up(ctx: click.Context, profile: str | None, time_scale: float | None, mailbox_servers: int | None) -> None:
    """Build the lab (clearing away a stale one first), with a latency profile and size."""
    topology = _topology(profile, time_scale, mailbox_servers)
    stale: Lab = ctx.obj
    if stale.exists():
        _progress(f"clearing away the stale lab {stale.name!r}")
        for note in stale.teardown():
            _progress(f"  {note}")
    lab = Lab(stale.name, topology=topology)
    _progress(f"profile {topology['profile']} at time scale {topology['time_scale']:g}, "
              f"{len(lab.hosts_with('mailbox', lab.sites[0]))} mailbox server(s) per site")
    try:
        timings = lifecycle.up(lab, _progress)
    except BaseException:
        _progress("lab up failed: clearing away what was built")
        lab.teardown()
        raise
    _progress("up in %.1f s (%s)" % (timings["total"], ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()
                                                                   if k != "total")))
    click.echo(str(lifecycle.inventory_dir(lab)))


@cli.command("critical-path")
@profile_options
def critical_path(profile: str | None, time_scale: float | None, mailbox_servers: int | None) -> None:
    """The unavoidable critical path of a planned failover under a profile (no lab needed)."""
    from lab import profiles

    topology = _topology(profile, time_scale, mailbox_servers)
    sizes = {s: v.get("mailbox_servers", 1) for s, v in topology["sites"].items()}
    click.echo(f"profile {topology['profile']}, time scale {topology['time_scale']:g}, mailbox servers per site "
               + ", ".join(f"{s} {n}" for s, n in sizes.items()))
    click.echo(profiles.format_table(profiles.critical_path(topology)))


@cli.command()
@click.pass_obj
def down(lab: Lab) -> None:
    """Kill every lab process, unmount, delete every namespace and the lab's state."""
    t = time.monotonic()
    notes = lifecycle.down(lab)
    for note in notes:
        _progress(note)
    left = lab.namespaces()
    if left:
        raise click.ClickException(f"namespaces left behind: {', '.join(left)}")
    _progress(f"down in {time.monotonic() - t:.1f} s")


@cli.command()
@click.pass_obj
def status(lab: Lab) -> None:
    """Every component and whether it answers. Exit 1 if any does not."""
    lifecycle.ensure_up(lab)
    rows = lifecycle.status(lab)
    width = max(len(r["host"]) for r in rows)
    cwidth = max(len(r["component"]) for r in rows)
    for r in rows:
        mark = "up  " if r["ok"] else "DOWN"
        click.echo(f"{mark}  {r['component']:<{cwidth}}  {r['host']:<{width}}  {r['address']:<14} {r['detail']}")
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec(lab: Lab, argv: tuple[str, ...]) -> None:
    """Run a command in the controller namespace (where Ansible runs)."""
    lifecycle.ensure_up(lab)
    sys.exit(subprocess.call(["ip", "netns", "exec", lab.ctl_ns, *argv]))


@cli.command()
@click.pass_obj
def reset(lab: Lab) -> None:
    """Back to the initial state: links up, zones, directories and emulators as at `up`."""
    lifecycle.ensure_up(lab)
    lifecycle.reset(lab, _progress)


@cli.command()
@click.pass_obj
def inventory(lab: Lab) -> None:
    """Print the path of the lab's Ansible inventory."""
    click.echo(str(lifecycle.inventory_dir(lab)))


@cli.command()
@click.pass_obj
def outbound(lab: Lab) -> None:
    """List the mail that reached the outside relay, and which host handed it over."""
    from lab.smtp_sink import SmtpSink, received

    by_address = {h.address: h.name for h in lab.hosts.values()}
    for host in (h for h in lab.hosts.values() if "smtp_sink" in h.services):
        for item in received(SmtpSink.outbox(host)):
            subject = next((line[9:] for line in item["data"].splitlines()
                            if line.lower().startswith("subject: ")), "")
            click.echo(f"{time.strftime('%H:%M:%S', time.localtime(item['received']))}  "
                       f"from {by_address.get(item['peer'], item['peer'])}  "
                       f"{item['mail_from']} -> {', '.join(item['rcpt_tos'])}  {subject}")


@cli.group()
def fault() -> None:
    """Inject and clear faults."""


@fault.command("cut-site")
@click.argument("site")
@click.pass_obj
def cut_site(lab: Lab, site: str) -> None:
    """Cut SITE off: its hosts reach each other and nothing else."""
    lifecycle.ensure_up(lab)
    lab.set_site_link(site, False)
    _progress(f"site {site} cut off")


@fault.command()
@click.pass_obj
def heal(lab: Lab) -> None:
    """Clear every fault: links up, stopped hosts and services started."""
    lifecycle.ensure_up(lab)
    lifecycle.heal(lab)
    _progress("healed")


@fault.command()
@click.argument("target")
@click.pass_obj
def stop(lab: Lab, target: str) -> None:
    """Stop HOST (unreachable) or HOST/SERVICE (the process is stopped)."""
    lifecycle.ensure_up(lab)
    _progress(lifecycle.fault_stop(lab, target))


@fault.command()
@click.argument("target")
@click.pass_obj
def start(lab: Lab, target: str) -> None:
    """Start HOST or HOST/SERVICE again."""
    lifecycle.ensure_up(lab)
    _progress(lifecycle.fault_start(lab, target))


def _component_fault(service: str):
    """`lab fault <component> ACTION ARGS`: hand over to the emulator's own fault switchboard."""

    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_obj
    def command(lab: Lab, args: tuple[str, ...]) -> None:
        lifecycle.ensure_up(lab)
        from lab import services

        sys.exit(services.get(service).fault(lab, list(args)))

    return command


fault.command("scality", context_settings={"ignore_unknown_options": True},
              help="Scality faults: site-down, node-down, disk-out, supervisor-unreachable, sproxyd-error, "
                   "sproxyd-slow, delete-423, backlog, heal, show (see `lab fault scality -- --help`).")(
    _component_fault("scality_sproxyd"))
fault.command("zimbra", context_settings={"ignore_unknown_options": True},
              help="Zimbra stand-in faults: start-fail HOST [PROCESS [MESSAGE]] (the process dies as it "
                   "starts: zmcontrol start fails, status shows it Stopped), heal [HOST...].")(
    _component_fault("zimbra"))


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("ansible_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def demo(lab: Lab, ansible_args: tuple[str, ...]) -> None:
    """The main job: build the platform, fail over to dc2 and back, verifying after each step.

    site-build -> replication-verify -> failover -l dc2 (planned) -> replication-verify ->
    failback -l dc1 -> replication-verify, on the lab's inventory; stops at the first failure.
    ANSIBLE_ARGS (e.g. -v) are passed to every ansible-playbook run. The lab must be up.
    """
    steps = [
        ("build the platform (dc1 active)", "playbooks/site_build.yml", []),
        ("verify replication", "playbooks/replication_verify.yml", []),
        ("planned failover to dc2", "playbooks/failover.yml", ["-l", "dc2"]),
        # A planned failover ends with a reverse resync: dc2 -> dc1 must verify as healthy.
        ("verify replication (dc2 active)", "playbooks/replication_verify.yml", []),
        ("failback to dc1", "playbooks/failback.yml", ["-l", "dc1"]),
        ("verify replication", "playbooks/replication_verify.yml", []),
    ]
    # Every playbook must exist before anything runs: a missing one is an error, never a skip.
    missing = sorted({pb for _, pb, _ in steps if not (REPO / pb).is_file()})
    if missing:
        raise click.ClickException("the demo cannot run, these playbooks do not exist: " + ", ".join(missing))
    lifecycle.ensure_up(lab)
    reports = REPO / "reports"  # zimbra_geo_report_dir's default: reports/ where ansible-playbook runs
    started = time.time()

    def written_reports() -> list[os.PathLike[str]]:
        if not reports.is_dir():
            return []
        found = sorted(p for p in reports.rglob("*") if p.is_file() and p.stat().st_mtime >= started)
        if found:
            _progress(f"reports written during the demo ({len(found)} files) in {reports}:")
            for path in found:
                click.echo(str(path))
        return found

    inventory = lifecycle.inventory_dir(lab)
    timings: list[tuple[str, str, float]] = []
    for number, (title, pb, args) in enumerate(steps, 1):
        command = " ".join(["ansible-playbook", "-i", str(inventory), pb, *args, *ansible_args])
        _progress(f"step {number}/{len(steps)}: {title}: {command}")
        t = time.monotonic()
        rc = lifecycle.run_ansible(lab, [str(REPO / ".venv" / "bin" / "ansible-playbook"), str(REPO / pb),
                                         *args, *ansible_args])
        timings.append((f"{number}. {title}", pb, time.monotonic() - t))
        if rc != 0:
            done = ", ".join(f"{name} ({secs:.1f} s)" for name, _, secs in timings[:-1]) or "none"
            _progress(f"step {number} failed after {timings[-1][2]:.1f} s; steps done before it: {done}")
            written_reports()
            raise click.ClickException(
                f"demo stopped at step {number}/{len(steps)} ({title}): {pb} failed (exit {rc}). "
                f"The task output above says why; its message names a section of docs/operator-guide.md. "
                f"Re-run this step alone with: python -m lab --name {lab.name} exec -- {command}")
    width = max(len(name) for name, _, _ in timings)
    for name, pb, secs in timings:
        _progress(f"  {name:<{width}}  {secs:6.1f} s  {pb}")
    _progress(f"demo done in {sum(secs for _, _, secs in timings):.1f} s; the lab stays up "
              f"(python -m lab --name {lab.name} down removes it)")
    if not written_reports():
        raise click.ClickException(f"the playbooks succeeded but wrote no report under {reports}")


if __name__ == "__main__":
    cli(prog_name="python -m lab")
