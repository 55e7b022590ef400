"""awx/configs is loadable by infra.aap_configuration and consistent with awx.awx and the roles.

Every key of every object is an option of the awx.awx module that manages it; every name an
object refers to is defined; each credential type injects what the roles (or the example
inventory) read; the failover survey asks exactly the role's options with the role's choices.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml
from jinja2 import StrictUndefined
from jinja2.nativetypes import NativeEnvironment

import ansible_collections.awx.awx.plugins.modules as awx_modules

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "awx" / "configs"

# infra.aap_configuration variable -> the awx.awx module its role calls.
MODULES = {
    "controller_credential_types": "credential_type",
    "controller_credentials": "credential",
    "controller_execution_environments": "execution_environment",
    "controller_projects": "project",
    "controller_inventories": "inventory",
    "controller_inventory_sources": "inventory_source",
    "controller_templates": "job_template",
    "controller_schedules": "schedule",
    "controller_workflows": "workflow_job_template",
}
# Keys the roles handle themselves rather than pass to the module.
ROLE_KEYS = {"controller_workflows": {"simplified_workflow_nodes"}}


class Unsafe(str):
    pass


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!unsafe", lambda loader, node: Unsafe(loader.construct_scalar(node)))


def _render(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, Unsafe):
        return str(value)
    if isinstance(value, str) and "{{" in value:
        return _render(NativeEnvironment(undefined=StrictUndefined).from_string(value).render(context), context)
    if isinstance(value, dict):
        return {k: _render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, context) for v in value]
    return value


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted(CONFIGS.glob("*.yml")):
        data = yaml.load(path.read_text(), Loader=_Loader) or {}
        assert not set(data) & set(merged), f"{path.name} redefines {set(data) & set(merged)}"
        merged.update(data)
    return merged


@pytest.fixture(scope="module")
def config(raw: dict[str, Any]) -> dict[str, Any]:
    example = yaml.load((REPO / "awx" / "secrets.example.yml").read_text(), Loader=_Loader)
    return _render(raw, {**raw, **example})


def module_options(name: str) -> set[str]:
    source = Path(awx_modules.__file__).parent / f"{name}.py"
    tree = ast.parse(source.read_text())
    doc = next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
               and getattr(node.targets[0], "id", None) == "DOCUMENTATION")
    options = yaml.safe_load(doc)["options"]
    return set(options) | {alias for spec in options.values() for alias in spec.get("aliases", [])}


def names(config: dict[str, Any], var: str) -> set[str]:
    return {item["name"] for item in config[var]}


@pytest.mark.parametrize("var", sorted(MODULES))
def test_keys_are_module_options(config: dict[str, Any], var: str) -> None:
    allowed = module_options(MODULES[var]) | ROLE_KEYS.get(var, set())
    for item in config[var]:
        assert set(item) <= allowed, f"{var} {item['name']}: {set(item) - allowed}"


def test_references_resolve(config: dict[str, Any]) -> None:
    types = names(config, "controller_credential_types")
    credentials = names(config, "controller_credentials")
    templates = names(config, "controller_templates")
    for credential in config["controller_credentials"]:
        assert credential["credential_type"] in types | {"Machine"}
    for jt in config["controller_templates"]:
        assert jt["project"] in names(config, "controller_projects")
        assert jt["inventory"] in names(config, "controller_inventories")
        assert jt["execution_environment"] in names(config, "controller_execution_environments")
        assert set(jt["credentials"]) <= credentials
        assert (REPO / jt["playbook"]).is_file(), jt["playbook"]
    for source in config["controller_inventory_sources"]:
        assert source["inventory"] in names(config, "controller_inventories")
        assert (REPO / source["source_path"]).is_dir()
    for schedule in config["controller_schedules"]:
        assert schedule["unified_job_template"] in templates | names(config, "controller_projects")
    for workflow in config["controller_workflows"]:
        nodes = {node["identifier"]: node for node in workflow["simplified_workflow_nodes"]}
        for node in nodes.values():
            assert ("approval_node" in node) != ("unified_job_template" in node)
            assert node.get("unified_job_template", next(iter(templates))) in templates
            for edge in ("success_nodes", "failure_nodes", "always_nodes"):
                assert set(node.get(edge, [])) <= set(nodes)


def test_credential_types_inject_what_the_roles_read(config: dict[str, Any]) -> None:
    injected: dict[str, str] = {}
    for ctype in config["controller_credential_types"]:
        fields = {field["id"]: field for field in ctype["inputs"]["fields"]}
        for field_id, field in fields.items():
            if "password" in field_id or "secret" in field_id:
                assert field.get("secret") is True, f"{ctype['name']}: {field_id} is not secret"
        assert not ctype["injectors"].get("env")
        for var in ctype["injectors"]["extra_vars"]:
            assert var not in injected, f"{var} injected by {injected.get(var)} and {ctype['name']}"
            injected[var] = ctype["name"]
    read_by_roles = {
        "zimbra_geo_ontap_username", "zimbra_geo_ontap_password",
        "zimbra_geo_scality_supervisor_username", "zimbra_geo_scality_supervisor_password",
        "zimbra_geo_ldap_admin_password", "zimbra_geo_ldap_config_password", "zimbra_geo_ca_path",
    }
    assert read_by_roles <= set(injected)
    example = yaml.safe_load((REPO / "inventories" / "example" / "group_vars" / "all" / "platform.yml").read_text())
    for view, definition in example["zimbra_geo_dns_views"].items():
        var = definition["key_secret"].strip("{} ")
        assert var in injected and f"({view} view)" in injected[var], (view, var)


def test_failover_survey_matches_the_role(config: dict[str, Any]) -> None:
    specs = yaml.safe_load((REPO / "roles" / "site_failover" / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    failover = next(jt for jt in config["controller_templates"] if jt["playbook"] == "playbooks/failover.yml")
    workflow = config["controller_workflows"][0]
    for launchable in (failover, workflow):
        assert launchable["ask_limit_on_launch"] is True and not launchable.get("limit")
        assert not launchable.get("ask_variables_on_launch")
        assert launchable["survey_enabled"] is True
    for question in failover["survey_spec"]["spec"]:
        option = options[question["variable"]]
        if option["type"] == "bool":
            assert {str(choice).lower() for choice in question["choices"]} == {"true", "false"}
            assert str(question["default"]).lower() == str(option["default"]).lower()
        else:
            assert question["choices"] == option["choices"] and question["default"] == option["default"]
    assert workflow["survey_spec"] == failover["survey_spec"]


def test_dr_test_template_asks_the_standby_and_the_roles_actions(config: dict[str, Any]) -> None:
    specs = yaml.safe_load((REPO / "roles" / "dr_test" / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    [drill] = [jt for jt in config["controller_templates"] if jt["playbook"] == "playbooks/dr_test.yml"]
    assert (REPO / drill["playbook"]).is_file()
    # The limit names the standby: asked at launch, never a default that could be the active site.
    assert drill["ask_limit_on_launch"] is True and not drill.get("limit")
    assert not drill.get("ask_variables_on_launch") and drill["survey_enabled"] is True
    [question] = drill["survey_spec"]["spec"]
    option = options[question["variable"]]
    assert question["choices"] == option["choices"] and question["default"] == option["default"]
    assert drill["extra_vars"]["zimbra_geo_report_dir"] == config["zimbra_geo_awx_report_dir"]


def test_workflow_verify_approve_failover_verify(config: dict[str, Any]) -> None:
    templates = {jt["name"]: jt for jt in config["controller_templates"]}
    nodes = {n["identifier"]: n for n in config["controller_workflows"][0]["simplified_workflow_nodes"]}

    def playbook(identifier: str) -> str:
        return templates[nodes[identifier]["unified_job_template"]]["playbook"]

    [approve] = nodes["verify_before"]["always_nodes"]
    assert playbook("verify_before") == "playbooks/replication_verify.yml"
    assert "RPO" in nodes[approve]["approval_node"]["description"]
    [failover] = nodes[approve]["success_nodes"]
    assert playbook(failover) == "playbooks/failover.yml"
    [after] = nodes[failover]["success_nodes"]
    assert playbook(after) == "playbooks/replication_verify.yml"
    [failed] = nodes[failover]["failure_nodes"]
    assert playbook(failed) == "awx/playbooks/failed-run-report.yml"
