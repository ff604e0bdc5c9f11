"""What the wheel ships: every package under launcher/ and the schemas, as pyproject.toml lists them (an
explicit list, so that schemas/ can ship inside the wheel as launcher/schemas/). The pre-commit hook test
installs the package with pip and runs it, end to end."""

from __future__ import annotations

import tomllib

from support.cli import REPO


def setuptools_table() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_package_under_launcher_is_listed_for_the_wheel():
    packages = {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "launcher").rglob("__init__.py")}
    listed = set(setuptools_table()["packages"])
    assert packages - listed == set()
    assert listed - packages == {"launcher.schemas"}


def test_the_schemas_ship_as_launcher_schemas_where_schema_dir_looks_in_an_installed_package(tmp_path, monkeypatch):
    from launcher.check import schemas

    table = setuptools_table()
    assert table["package-dir"] == {"launcher.schemas": "schemas"}
    assert table["package-data"] == {"launcher.schemas": ["*.json"]}
    installed = tmp_path / "launcher" / "schemas"  # site-packages/launcher/schemas/, as the wheel lays it out
    installed.mkdir(parents=True)
    (installed / schemas.LF_SCHEMA).write_text("{}")
    monkeypatch.setattr(schemas, "PACKAGE_ROOT", tmp_path)
    assert schemas.schema_dir() == installed
