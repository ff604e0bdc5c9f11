"""The wheels the GPU check carries to the box, and the checks on them that need no network.

Three files beside this one: wheels.toml (the pins, each with why it is carried, and what is left behind on
purpose), box.txt (what the box has installed) and wheels.lock.json (what prepare.sh downloaded: file names,
sizes, sha256 and each wheel's requirements, written by `prepare.sh --write-lock`). From them:
`folder_problems` checks a wheel folder (one wheel per pin, for cp312 manylinux x86_64, under 64 MiB in all),
`requirement_problems` checks that every requirement of every carried wheel -- its Requires-Dist, plus the
version gates LLaMA-Factory and transformers enforce at run time -- is met by another carried wheel or by the
box. The box's versions are known only for some packages (box.txt); the others are checked for presence here and
for their version by check.sh on the box itself (probe.py's `unmet_requirements`).
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import tomllib
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging import tags
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

HERE = Path(__file__).resolve().parent
SPEC_FILE, BOX_FILE, LOCK_FILE = HERE / "wheels.toml", HERE / "box.txt", HERE / "wheels.lock.json"
SIZE_LIMIT = 64 * 1024 * 1024  # what travels to the box with the working tree, wheels included
PYTHON_VERSION = (3, 12)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
# Environment markers as they evaluate on the box (CPython 3.12.3, Linux x86_64), no extras asked for.
BOX_MARKERS = {"python_version": "3.12", "python_full_version": "3.12.3", "os_name": "posix",
               "sys_platform": "linux", "platform_machine": "x86_64", "platform_system": "Linux",
               "platform_release": "", "platform_version": "", "implementation_name": "cpython",
               "implementation_version": "3.12.3", "platform_python_implementation": "CPython", "extra": ""}


@dataclass(frozen=True)
class Pin:
    name: str      # canonical (PEP 503) name
    version: str
    why: str
    build: str     # "wheel": downloaded as built; "sdist": built here from PyPI's source distribution


def load_pins(path: Path = SPEC_FILE) -> tuple[dict[str, Pin], dict[str, str]]:
    """The carried pins by canonical name, and the left-behind requirements with why they stay behind."""
    spec = tomllib.loads(path.read_text(encoding="utf-8"))
    pins = {canonicalize_name(name): Pin(canonicalize_name(name), entry["version"], entry["why"],
                                         entry.get("build", "wheel"))
            for name, entry in spec["carry"].items()}
    left_behind = {canonicalize_name(name): why for name, why in spec.get("left_behind", {}).items()}
    return pins, left_behind


def load_box(path: Path = BOX_FILE) -> dict[str, str | None]:
    """The box's distributions by canonical name, with the version where box.txt gives one."""
    box: dict[str, str | None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            box[canonicalize_name(name)] = version or None
    return box


def target_tags() -> frozenset[tags.Tag]:
    """Every wheel tag that installs on CPython 3.12 for manylinux x86_64."""
    return frozenset(itertools.chain(
        tags.cpython_tags(PYTHON_VERSION, abis=["cp312"], platforms=PLATFORMS),
        tags.compatible_tags(PYTHON_VERSION, "cp312", PLATFORMS)))


def folder_problems(wheels: list[Path], pins: dict[str, Pin], limit: int = SIZE_LIMIT) -> list[str]:
    """What is wrong with a folder of wheels for the box: a pin without its wheel, a wheel of another version
    or of no pin (pip refuses two versions of one package), a wheel that does not install on cp312 x86_64,
    or a total over `limit` bytes."""
    problems, seen, supported = [], {}, target_tags()
    for wheel in sorted(wheels):
        name, version, _, wheel_tags = parse_wheel_filename(wheel.name)
        pin = pins.get(name)
        if pin is None or str(version) != pin.version:
            wanted = f"the pin is {pin.name}=={pin.version}" if pin else "nothing pins it"
            problems.append(f"{wheel.name}: not a carried wheel ({wanted}); remove it")
        elif name in seen:
            problems.append(f"{wheel.name}: a second wheel of {name} (also {seen[name]}); keep one")
        if not wheel_tags & supported:
            problems.append(f"{wheel.name}: does not install on CPython 3.12, manylinux x86_64")
        seen.setdefault(name, wheel.name)
    problems += [f"{pin.name}=={pin.version}: no wheel for it" for pin in pins.values() if pin.name not in seen]
    total = sum(wheel.stat().st_size for wheel in wheels)
    if total > limit:
        problems.append(f"{total / 2**20:.1f} MiB in all, over the {limit / 2**20:.0f} MiB limit")
    return problems


def wheel_metadata(wheel: Path) -> tuple[str, str, list[str]]:
    """(canonical name, version, Requires-Dist lines) from the wheel's own METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        path = next(n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(archive.read(path).decode("utf-8"))
    return canonicalize_name(headers["Name"]), headers["Version"], headers.get_all("Requires-Dist") or []


def _function_strings(source: str, function: str) -> list[str]:
    """The string arguments of the calls inside one top-level function of a module's source."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return [arg.value for call in ast.walk(node) if isinstance(call, ast.Call)
                    for arg in call.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    raise ValueError(f"no function {function}()")


def _assigned(source: str, variable: str):
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == variable for t in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError(f"no assignment to {variable}")


def runtime_gates(wheel: Path) -> list[str]:
    """The version checks a package runs when imported or started, beyond its Requires-Dist: LLaMA-Factory's
    check_dependencies() (llamafactory/extras/misc.py) and transformers' import-time check
    (transformers/dependency_versions_check.py over dependency_versions_table.py)."""
    name = wheel_metadata(wheel)[0]
    with zipfile.ZipFile(wheel) as archive:
        def read(path: str) -> str:
            return archive.read(path).decode("utf-8")
        if name == "llamafactory":
            return _function_strings(read("llamafactory/extras/misc.py"), "check_dependencies")
        if name == "transformers":
            checked = _assigned(read("transformers/dependency_versions_check.py"), "pkgs_to_check_at_runtime")
            table = _assigned(read("transformers/dependency_versions_table.py"), "deps")
            return [table[pkg] for pkg in checked if pkg != "python"]
    return []


def lock_entry(wheel: Path, pin: Pin) -> dict:
    """One wheel as wheels.lock.json records it."""
    name, version, requires = wheel_metadata(wheel)
    return {"name": name, "version": version, "file": wheel.name, "size": wheel.stat().st_size,
            "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(), "built": pin.build == "sdist",
            "requires": requires, "runtime_requires": runtime_gates(wheel)}


def _applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(BOX_MARKERS)


def _met_by(requirement: Requirement, pins: dict[str, Pin], box: dict[str, str | None],
            left_behind: dict[str, str]) -> str | None:
    """None when met; otherwise why not."""
    name = canonicalize_name(requirement.name)
    if name in pins:
        version = pins[name].version
        return None if requirement.specifier.contains(version, prereleases=True) else f"{name} {version} is carried"
    if name in box:
        version = box[name]
        if version is None or requirement.specifier.contains(version, prereleases=True):
            return None
        return f"the box has {name} {version}; carry a version that fits"
    if name in left_behind:
        return None
    return f"{name} is neither carried nor on the box (carry it, or leave it behind with a reason)"


def requirement_problems(lock: dict, pins: dict[str, Pin], box: dict[str, str | None],
                         left_behind: dict[str, str]) -> list[str]:
    """Every requirement of a locked wheel that nothing carried and nothing on the box meets."""
    problems = []
    for entry in lock["wheels"]:
        for verb, texts in (("requires", entry["requires"]), ("checks at run time", entry["runtime_requires"])):
            for requirement in map(Requirement, texts):
                if _applies(requirement) and (why := _met_by(requirement, pins, box, left_behind)):
                    problems.append(f"{entry['name']} {entry['version']} {verb} {requirement}: {why}")
    return problems


def presence_only(lock: dict, pins: dict[str, Pin], box: dict[str, str | None]) -> list[str]:
    """The versioned requirements met by a box package whose version box.txt does not give: checked on the box."""
    found = set()
    for entry in lock["wheels"]:
        for text in entry["requires"] + entry["runtime_requires"]:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            if (_applies(requirement) and requirement.specifier and name not in pins and name in box
                    and box[name] is None):
                found.add(f"{name}{requirement.specifier}")
    return sorted(found)
