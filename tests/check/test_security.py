"""Security properties: no shell anywhere, safe YAML only, config values never reach a shell, schemas never
fetch over the network, and risky settings are reported by `validate`."""

from __future__ import annotations

import ast
import json
import shlex
import socket
from pathlib import Path

import pytest
from test_adversarial_inputs import CONFIG, INFO, make_workspace

from launcher.check.validation import validate

from support.cli import REPO, run_main

LAUNCHER = REPO / "launcher"
SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"),
               ("yaml", "unsafe_load"), ("yaml", "full_load"), ("yaml", "unsafe_load_all"), ("yaml", "full_load_all")}


def dotted(node: ast.AST) -> tuple[str, ...]:
    if isinstance(node, ast.Attribute):
        return dotted(node.value) + (node.attr,)
    return (node.id,) if isinstance(node, ast.Name) else ()


def safe_loader_classes(trees: list[ast.Module]) -> set[str]:
    """SafeLoader and every class in the sources that derives from it, however indirectly."""
    safe, grew = set(SAFE_LOADERS), True
    classes = [node for tree in trees for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    while grew:
        grew = False
        for cls in classes:
            if cls.name not in safe and any(dotted(base)[-1:] and dotted(base)[-1] in safe for base in cls.bases):
                safe.add(cls.name)
                grew = True
    return safe


def unsafe_calls(sources: dict[str, str]) -> list[str]:
    """'file:line: what' for every shell=True, os.system-like call, eval/exec and yaml.load without a safe Loader."""
    trees = {name: ast.parse(text, name) for name, text in sources.items()}
    safe = safe_loader_classes(list(trees.values()))
    found = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            target = dotted(node.func)
            where = f"{name}:{node.lineno}"
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in node.keywords):
                found.append(f"{where}: shell=")
            if target[-2:] in SHELL_CALLS or target in (("eval",), ("exec",)):
                found.append(f"{where}: {'.'.join(target)}")
            if target[-2:] in (("yaml", "load"), ("yaml", "load_all")) or target == ("load",):
                loader = next((k.value for k in node.keywords if k.arg == "Loader"),
                              node.args[1] if len(node.args) > 1 else None)
                if loader is None or not dotted(loader) or dotted(loader)[-1] not in safe:
                    found.append(f"{where}: {'.'.join(target)} without a safe Loader")
    return found


def launcher_sources() -> dict[str, str]:
    return {str(path.relative_to(LAUNCHER.parent)): path.read_text(encoding="utf-8")
            for path in sorted(LAUNCHER.rglob("*.py"))}


def test_launcher_has_no_shell_no_eval_and_no_unsafe_yaml_load():
    sources = launcher_sources()
    assert "launcher/check/config.py" in sources and "launcher/plan/launch.py" in sources
    assert unsafe_calls(sources) == []


def test_the_source_scan_catches_each_unsafe_form():
    bad = ("import os, subprocess, yaml\n"
           "class Mine(yaml.Loader): pass\n"
           "subprocess.run('ls', shell=True)\n"
           "os.system('ls')\n"
           "yaml.load(text)\n"
           "yaml.load(text, Loader=yaml.Loader)\n"
           "yaml.load(text, Loader=Mine)\n"
           "yaml.full_load(text)\n"
           "eval('1')\n"
           "# yaml.load(text) in a comment is not code\n"
           "class Safe(yaml.SafeLoader): pass\n"
           "yaml.load(text, Safe)\n"
           "subprocess.run(['ls'], shell=False)\n")
    assert unsafe_calls({"bad.py": bad}) == [
        "bad.py:3: shell=", "bad.py:4: os.system", "bad.py:5: yaml.load without a safe Loader",
        "bad.py:6: yaml.load without a safe Loader", "bad.py:7: yaml.load without a safe Loader",
        "bad.py:8: yaml.full_load", "bad.py:9: eval"]


def test_the_config_loader_refuses_python_tags(tmp_path):
    root = make_workspace(tmp_path)
    (root / "c.yaml").write_text(CONFIG + "ref_model: !!python/object/apply:os.system ['touch PWNED']\n")
    errors = [d for d in validate(root / "c.yaml", cwd=root).diagnostics if d.severity == "error"]
    assert [d.code for d in errors] == ["yaml-syntax"]
    assert "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'" \
        in errors[0].message
    assert not (root / "PWNED").exists()


HOSTILE_OUTPUT = "x; rm -rf ~"
HOSTILE_DATASET = "$(touch PWNED)"


def hostile_workspace(root: Path) -> Path:
    make_workspace(root)
    info = {HOSTILE_DATASET: INFO["prefs"]}
    (root / "data" / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    text = CONFIG.replace("dataset: prefs", f"dataset: '{HOSTILE_DATASET}'").replace(
        "output_dir: out", f"output_dir: '{HOSTILE_OUTPUT}'")
    (root / "c.yaml").write_text(text, encoding="utf-8")
    return root


def test_shell_metacharacters_in_config_values_are_inert_in_validate(tmp_path):
    root = hostile_workspace(tmp_path)
    done = run_main("validate", "c.yaml", "--format", "json", cwd=root, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["summary"]["data"]["datasets"][HOSTILE_DATASET]["checked"] is True
    assert sorted(p.name for p in root.iterdir()) == ["c.yaml", "data"]


def test_undefined_hostile_dataset_name_is_only_reported(tmp_path):
    root = make_workspace(tmp_path)
    (root / "c.yaml").write_text(CONFIG.replace("dataset: prefs", f"dataset: '{HOSTILE_DATASET}'"))
    done = run_main("validate", "c.yaml", cwd=root, timeout=60)
    assert done.returncode == 1
    assert f"dataset '{HOSTILE_DATASET}' is not defined" in done.stdout
    assert not (root / "PWNED").exists()


def test_train_dry_run_passes_hostile_values_as_single_arguments_and_runs_nothing(tmp_path):
    root = hostile_workspace(tmp_path)
    done = run_main("train", "c.yaml", "--dry-run", cwd=root, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    command = done.stdout.split("command:\n", 1)[1].strip().splitlines()[0]
    argv = shlex.split(command)
    assert str(root / HOSTILE_OUTPUT / "dpo-launch" / "resolved_config.json") in argv
    assert not any(HOSTILE_DATASET in arg for arg in argv)  # values travel in the args file, not on argv
    assert sorted(p.name for p in root.iterdir()) == ["c.yaml", "data"]  # a dry run writes nothing


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError("network access in a test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    return attempts


@pytest.mark.parametrize("ref", ["https://example.com/evil.schema.json", "http://127.0.0.1:9/x.json#/defs/a"])
def test_a_remote_schema_ref_fails_closed_without_a_network_call(no_network, ref):
    from jsonschema.validators import validator_for
    from referencing.exceptions import Unresolvable

    from launcher.check.schemas import registry

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": ref}
    checker = validator_for(schema)(schema, registry=registry())
    with pytest.raises(Unresolvable):
        checker.validate({"stage": "dpo"})
    assert no_network == []


def test_dataset_info_validator_refuses_remote_refs(no_network):
    from referencing.exceptions import Unresolvable

    from launcher.check.data.dataset_info import validator

    resolver = validator()._resolver
    with pytest.raises(Unresolvable):
        resolver.lookup("https://example.com/evil.schema.json")
    assert no_network == []


def schema_refs(value: object) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [ref for item in value.values() for ref in schema_refs(item)]
    return [r for v in value for r in schema_refs(v)] if isinstance(value, list) else []


def test_every_ref_in_the_shipped_schemas_resolves_locally(no_network):
    from launcher.check.schemas import registry, schema_dir

    resolver = registry().resolver()
    for path in sorted(schema_dir().glob("*.json")):
        for ref in schema_refs(json.loads(path.read_text(encoding="utf-8"))):
            if not ref.startswith("#"):
                resolver.lookup(ref)  # raises Unresolvable when it would need the network
    assert no_network == []


def test_trust_remote_code_is_a_warning_that_says_what_it_means(tmp_path):
    root = make_workspace(tmp_path)
    (root / "c.yaml").write_text(CONFIG + "trust_remote_code: true\n")
    result = validate(root / "c.yaml", cwd=root)
    [warning] = [d for d in result.diagnostics if d.code == "trust-remote-code"]
    assert (warning.severity, warning.line) == ("warning", 10)
    assert "executes Python code from the model repository" in warning.message
    assert result.ok


def test_paths_outside_the_working_tree_are_warnings(tmp_path):
    root = make_workspace(tmp_path / "project")
    outside = tmp_path / "elsewhere"
    (outside / "data").mkdir(parents=True)
    for name in ("dataset_info.json", "prefs.jsonl"):
        (outside / "data" / name).write_bytes((root / "data" / name).read_bytes())
    (root / "c.yaml").write_text(CONFIG.replace("output_dir: out", "output_dir: ../elsewhere/out")
                                 + "dataset_dir: ../elsewhere/data\n")
    result = validate(root / "c.yaml", cwd=root)
    found = {d.path: d for d in result.diagnostics if d.code == "path-outside-working-tree"}
    assert sorted(found) == ["dataset_dir", "output_dir"]
    assert all(d.severity == "warning" for d in found.values())
    assert found["output_dir"].message == (
        f"output_dir: '../elsewhere/out' is relative and climbs out of the working tree ({root}): it resolves "
        f"against the directory the command runs in, so from here the job writes to {outside / 'out'}, and from any "
        "other directory somewhere else")
    assert result.ok
