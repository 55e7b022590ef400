"""The AWX job templates of awx/configs, run the way the controller runs them, against the lab.

For each launch the test builds what AWX builds for a job: a private data directory with the
project checkout (playbooks, ansible.cfg), the inventory (the lab's, with every secret taken
out, as a project inventory whose vault placeholders are never filled), the extra variables of
the job template plus the survey answers, one extra-variables file per custom credential
rendered from the credential type's injectors (files injected too), and the Machine
credential's key through ssh-agent; then ansible-runner runs the template's playbook with its
limit, job type, diff mode and forks. The collection comes from ANSIBLE_COLLECTIONS_PATH, as
in the execution environment. The checks read the runner's artifacts: rc and status, the
custom stats of set_stats, and the reports and run records the playbooks write.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from jinja2 import StrictUndefined
from jinja2.nativetypes import NativeEnvironment
from jinja2.sandbox import ImmutableSandboxedEnvironment

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONFIGS = REPO / "awx" / "configs"


# ------------------------------------------------------------------ the configuration as code
class Unsafe(str):
    """A value tagged !unsafe: Ansible leaves it alone, so does the loader below."""


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!unsafe", lambda loader, node: Unsafe(loader.construct_scalar(node)))


def load_configs() -> dict[str, Any]:
    """awx/configs/*.yml merged, as infra.aap_configuration's include_vars loads them."""
    merged: dict[str, Any] = {}
    for path in sorted(CONFIGS.glob("*.yml")):
        merged.update(yaml.load(path.read_text(), Loader=_Loader) or {})
    return merged


def template(value: Any, context: dict[str, Any]) -> Any:
    """Render the Jinja in config values the way Ansible does when it reads the variables
    (a lone expression keeps its type), leaving !unsafe values untouched."""
    env = NativeEnvironment(undefined=StrictUndefined)
    if isinstance(value, Unsafe):
        return str(value)
    if isinstance(value, str):
        return template(env.from_string(value).render(context), context) if "{{" in value else value
    if isinstance(value, dict):
        return {k: template(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [template(v, context) for v in value]
    return value


def by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [item for item in items if item["name"] == name]
    assert len(found) == 1, f"{name!r} defined {len(found)} times"
    return found[0]


# ------------------------------------------------------------------ what AWX does for a job
class Tower:
    """The ``tower`` namespace of AWX injector templates (``tower.filename.<label>``)."""

    def __init__(self) -> None:
        self.filename = type("Filenames", (), {})()


def inject(credential_type: dict[str, Any], inputs: dict[str, Any], env_dir: Path) -> Path | None:
    """AWX's custom credential injection: files from ``injectors.file`` (their paths in
    ``tower.filename``), then the extra variables, rendered in a sandbox and written to their
    own file as unsafe values (AWX never lets Jinja in injected values reach Ansible)."""
    injectors = credential_type.get("injectors", {})
    assert not injectors.get("env"), "the roles read variables, not the environment"
    fields = {f["id"] for f in credential_type["inputs"]["fields"]}
    assert set(credential_type["inputs"].get("required", [])) <= fields
    assert set(inputs) <= fields, f"{credential_type['name']}: inputs {set(inputs) - fields} are not fields"
    sandbox = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    tower = Tower()
    namespace = {**inputs, "tower": tower}
    for label, text in injectors.get("file", {}).items():
        assert label.startswith("template.")
        handle, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(handle, "w") as f:
            f.write(sandbox.from_string(text).render(namespace))
        setattr(tower.filename, label.split(".", 1)[1], path)
    extra = {}
    for key, text in injectors.get("extra_vars", {}).items():
        # The injector schema of AWX: variable names, string templates.
        assert re.fullmatch(r"[a-zA-Z_]+[a-zA-Z0-9_]*", key) and isinstance(text, str)
        extra[key] = sandbox.from_string(text).render(namespace)
    if not extra:
        return None
    handle, path = tempfile.mkstemp(dir=env_dir)
    with os.fdopen(handle, "w") as f:
        for key, value in extra.items():
            f.write(f"{key}: !unsafe {json.dumps(value)}\n")
    return Path(path)


SECRET_KEYS = (
    "zimbra_geo_ldap_admin_password", "zimbra_geo_ldap_config_password", "zimbra_geo_ontap_username",
    "zimbra_geo_ontap_password", "zimbra_geo_scality_supervisor_username",
    "zimbra_geo_scality_supervisor_password", "zimbra_geo_ca_path",
)


class Controller:
    """Launches the job templates of awx/configs against the lab, as AWX would."""

    def __init__(self, lab: Any, root: Path) -> None:
        self.lab = lab
        self.root = root
        self.reports = root / "reports"
        self.reports.mkdir()
        platform = lab.inventory_vars()
        lab_dir = Path(lab.dir)
        self.secrets = {
            "ssh_private_key": (lab_dir / "ssh" / "id_ed25519").read_text(),
            "ca_pem": (lab_dir / "ca" / "ca.pem").read_text(),
            "ontap_username": platform["zimbra_geo_ontap_username"],
            "ontap_password": platform["zimbra_geo_ontap_password"],
            "scality_username": platform["zimbra_geo_scality_supervisor_username"],
            "scality_password": platform["zimbra_geo_scality_supervisor_password"],
            "ldap_admin_password": platform["zimbra_geo_ldap_admin_password"],
            "ldap_config_password": platform["zimbra_geo_ldap_config_password"],
            "tsig_internal": platform["zimbra_geo_dns_views"]["internal"]["key_secret"],
            "tsig_external": platform["zimbra_geo_dns_views"]["external"]["key_secret"],
        }
        raw = load_configs()
        context = {**raw, "zimbra_geo_awx_report_dir": str(self.reports), "zimbra_geo_awx_secrets": self.secrets}
        self.config = template(raw, context)
        self.project = root / "project"
        self._checkout()
        self.inventory = root / "inventory"
        self._inventory_without_secrets(Path(lab.inventory))
        self.launches = 0

    def _checkout(self) -> None:
        """What a project sync leaves: the repository's playbooks and ansible.cfg (whose
        collections_path points at a developer set-up that is not there)."""
        shutil.copytree(REPO / "playbooks", self.project / "playbooks")
        shutil.copytree(REPO / "awx", self.project / "awx")
        shutil.copy(REPO / "ansible.cfg", self.project / "ansible.cfg")

    def _inventory_without_secrets(self, source: Path) -> None:
        shutil.copytree(source, self.inventory)
        platform_file = self.inventory / "group_vars" / "all" / "platform.yml"
        platform = yaml.safe_load(platform_file.read_text())
        for key in SECRET_KEYS:
            platform.pop(key)
        for view in platform["zimbra_geo_dns_views"]:
            # As in inventories/example: the secret is a placeholder the credential fills.
            platform["zimbra_geo_dns_views"][view]["key_secret"] = "{{ vault_zimbra_geo_tsig_%s }}" % view
        platform_file.write_text(yaml.safe_dump(platform))
        connection_file = self.inventory / "group_vars" / "all" / "connection.yml"
        connection = yaml.safe_load(connection_file.read_text())
        connection.pop("ansible_user")
        connection.pop("ansible_ssh_private_key_file")
        connection_file.write_text(yaml.safe_dump(connection))
        text = "".join(p.read_text() for p in self.inventory.rglob("*.yml"))
        for name, value in self.secrets.items():
            if name != "ca_pem" and not name.endswith("username"):
                assert value.strip() not in text, f"{name} is still in the inventory"

    def launch(self, name: str, limit: str | None = None, survey: dict[str, str] | None = None,
               job_type: str | None = None) -> dict[str, Any]:
        import ansible_runner

        jt = by_name(self.config["controller_templates"], name)
        assert jt["project"] == by_name(self.config["controller_projects"], "zimbra_geo")["name"]
        extravars = {"awx_job_template_name": name, "tower_job_template_name": name,
                     "awx_job_id": self.launches + 1, "awx_user_name": "operator"}
        extravars.update(jt.get("extra_vars") or {})
        if survey is not None:
            assert jt.get("survey_enabled"), f"{name} has no survey"
            questions = {q["variable"]: q for q in jt["survey_spec"]["spec"]}
            for variable, answer in survey.items():
                assert variable in questions, f"{name}: no survey question sets {variable}"
                if questions[variable]["type"] == "multiplechoice":
                    assert answer in questions[variable]["choices"], (variable, answer)
            for variable, question in questions.items():
                extravars[variable] = survey.get(variable, question.get("default"))
        if limit is not None:
            assert jt.get("ask_limit_on_launch"), f"{name} does not ask for a limit"
        else:
            limit = jt.get("limit") or None
        if job_type is not None:
            assert jt.get("ask_job_type_on_launch"), f"{name} does not ask for the job type"
        job_type = job_type or jt.get("job_type", "run")

        self.launches += 1
        pdd = self.root / f"job{self.launches}"
        (pdd / "env").mkdir(parents=True)
        (pdd / "project").symlink_to(self.project)
        args: list[str] = []
        ssh_key = None
        for credential_name in jt["credentials"]:
            credential = by_name(self.config["controller_credentials"], credential_name)
            if credential["credential_type"] == "Machine":
                args += ["-u", credential["inputs"]["username"]]
                ssh_key = credential["inputs"]["ssh_key_data"]
                continue
            ctype = by_name(self.config["controller_credential_types"], credential["credential_type"])
            path = inject(ctype, credential["inputs"], pdd / "env")
            if path:
                args += ["-e", f"@{path}"]
        if job_type == "check":
            args.append("--check")
        if jt.get("diff_mode"):
            args.append("--diff")
        if jt.get("forks"):
            args.append(f"--forks={jt['forks']}")
        runner = ansible_runner.run(
            private_data_dir=str(pdd), playbook=jt["playbook"], inventory=str(self.inventory),
            limit=limit, extravars=extravars, cmdline=" ".join(args), ssh_key=ssh_key,
            quiet=True, ident="job",
            # The checkout's ansible.cfg applies (AWX runs in the project directory); the
            # collection comes from the path the execution environment sets.
            envvars={"ANSIBLE_CONFIG": str(self.project / "ansible.cfg"),
                     "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"), "PATH": f"{BIN}:{os.environ['PATH']}"},
        )
        stats = next((e["event_data"] for e in runner.events if e["event"] == "playbook_on_stats"), {})
        stdout = (pdd / "artifacts" / "job" / "stdout").read_text()
        for secret_name, value in self.secrets.items():
            if secret_name.endswith("password") or secret_name.startswith("tsig"):
                assert value not in stdout, f"{secret_name} shows in the output of {name}"
        return {"rc": runner.rc, "status": runner.status, "stats": runner.stats or {},
                "custom": stats.get("artifact_data", {}), "stdout": stdout}

    def records(self, pattern: str) -> list[Path]:
        return sorted(self.reports.glob(pattern))


@pytest.fixture(scope="module")
def controller(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    lab.reset()
    yield Controller(lab, tmp_path_factory.mktemp("awx"))
    lab.reset()


def explain(job: dict[str, Any]) -> str:
    return job["stdout"][-4000:]


def test_site_build_then_scheduled_verify(controller: Controller) -> None:
    build = controller.launch("zimbra_geo site build")
    assert (build["rc"], build["status"]) == (0, "successful"), explain(build)
    assert build["stats"]["failures"] == {} and build["stats"]["changed"], build["stats"]

    schedule = by_name(controller.config["controller_schedules"], "zimbra_geo replication verify every 15 minutes")
    verify = controller.launch(schedule["unified_job_template"])
    assert (verify["rc"], verify["status"]) == (0, "successful"), explain(verify)
    custom = verify["custom"]
    assert custom["replication_verify_ok"] is True, custom
    assert custom["replication_verify_active_site"] == "dc1"
    assert custom["replication_verify_failed_checks"] == []
    assert isinstance(custom["replication_verify_rpo_current_seconds"], (int, float))
    report = Path(custom["replication_verify_report"])
    assert report.parent == controller.reports and report.is_file()
    assert json.loads(report.read_text())["ok"] is True


def test_dr_test_refuses_the_active_site(controller: Controller) -> None:
    # dc1 is active after the build: the drill refuses it before any change, and records why.
    job = controller.launch("zimbra_geo DR test (drill)", limit="dc1", survey={"dr_test_action": "run"})
    assert job["rc"] != 0 and job["status"] == "failed"
    assert "dc1 is not the standby site" in job["stdout"], explain(job)
    assert "docs/operator-guide.md#a-dr-test-was-refused" in job["stdout"]
    [record] = controller.records("dr-test-dc1-*.json")
    content = json.loads(record.read_text())
    assert (content["result"], content["action"], content["clones"], content["leftovers"]) == ("failed", "run", [], [])
    assert [s["result"] for s in content["steps"]] == ["failed"]


def test_failover_survey_refuses_unconfirmed_disaster(controller: Controller) -> None:
    job = controller.launch("zimbra_geo failover", limit="dc2",
                            survey={"site_failover_mode": "disaster", "site_failover_confirm_disaster": "false"})
    assert job["rc"] != 0 and job["status"] == "failed"
    assert "confirm it with -e site_failover_confirm_disaster=true" in job["stdout"]
    assert not controller.records("failover-*.json")


def test_failover_check_job_prints_the_plan(controller: Controller) -> None:
    job = controller.launch("zimbra_geo failover", limit="dc2", job_type="check",
                            survey={"site_failover_mode": "planned"})
    assert (job["rc"], job["status"]) == (0, "successful"), explain(job)
    assert "break_mirrors: would change" in job["stdout"]
    assert not controller.records("failover-*.json")


def test_failover_then_failback(controller: Controller) -> None:
    failover = controller.launch("zimbra_geo failover", limit="dc2", survey={"site_failover_mode": "planned"})
    assert (failover["rc"], failover["status"]) == (0, "successful"), explain(failover)
    [record] = controller.records("failover-dc2-*.json")
    content = json.loads(record.read_text())
    assert (content["result"], content["mode"], content["old_site"]) == ("done", "planned", "dc1")

    failback = controller.launch("zimbra_geo failback")  # the template's default limit
    assert (failback["rc"], failback["status"]) == (0, "successful"), explain(failback)
    [record] = controller.records("failback-dc1-*.json")
    assert json.loads(record.read_text())["result"] == "done"


def test_failure_path_writes_the_report_and_fails(controller: Controller) -> None:
    workflow = by_name(controller.config["controller_workflows"], "zimbra_geo verified failover")
    nodes = {n["identifier"]: n for n in workflow["simplified_workflow_nodes"]}
    failure_template = nodes[nodes["failover"]["failure_nodes"][0]]["unified_job_template"]
    before = set(controller.records("replication-verify-2*.json"))
    job = controller.launch(failure_template)
    assert job["rc"] != 0 and job["status"] == "failed"
    assert "The failover failed." in job["stdout"]
    [report] = set(controller.records("replication-verify-2*.json")) - before
    assert json.loads(report.read_text())["active_site"] == "dc1"
    assert job["custom"]["replication_verify_report"] == str(report)
