"""Read a config exactly as LLaMA-Factory 0.9.5 reads it, keeping where every key came from.

LLaMA-Factory does `OmegaConf.load(yaml)` merged with `OmegaConf.from_cli(overrides)`, then
`OmegaConf.to_container(resolve=False)`. We reproduce that with PyYAML and OmegaConf's own loader
rules (floats like `5e-6`, no timestamps, duplicate keys rejected) so that no heavy import is needed,
and we keep line/column positions so every diagnostic can point at the source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from launcher.check.diagnostics import ERROR, OVERRIDES_FILE, WARNING, Diagnostic
from launcher.check.yaml_loader import MAX_EXPANDED_VALUES, OmegaConfLoader

KeyPath = tuple  # e.g. ("dataset",) or ("lora_target", 0)


@dataclass(frozen=True)
class Position:
    file: str
    line: int | None = None
    column: int | None = None


@dataclass
class LoadedConfig:
    """The merged key/value dict LLaMA-Factory would see, plus where each key and value came from."""

    path: Path
    values: dict[str, Any]
    key_positions: dict[KeyPath, Position] = field(default_factory=dict)
    value_positions: dict[KeyPath, Position] = field(default_factory=dict)
    overridden: set[str] = field(default_factory=set)

    @property
    def file(self) -> str:
        return str(self.path)

    def key_at(self, *key_path: Any) -> Position:
        return self.key_positions.get(tuple(key_path), Position(self.file))

    def value_at(self, *key_path: Any) -> Position:
        return self.value_positions.get(tuple(key_path)) or self.key_at(*key_path)

    def diagnostic(self, severity: str, code: str, message: str, key: str | None = None,
                   at_value: bool = True, hint: str | None = None, **extra: Any) -> Diagnostic:
        """A diagnostic located at `key` (its value by default) in this config."""
        position = Position(self.file)
        if key is not None:
            position = self.value_at(key) if at_value else self.key_at(key)
        return Diagnostic(severity, code, message, file=position.file, line=position.line,
                          column=position.column, path=key, hint=hint, **extra)


class ConfigLoadError(Exception):
    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedConfig:
    """Load a YAML or JSON config and apply `key=value` overrides. Raises ConfigLoadError."""
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() == ".json":
        values, key_positions, value_positions = _parse_json(text, str(path))
    else:
        values, key_positions, value_positions = _parse_yaml(text, str(path))
    loaded = LoadedConfig(path, values, key_positions, value_positions)
    apply_overrides(loaded, overrides)
    return loaded


def _read_text(path: Path) -> str:
    def fail(message: str, hint: str | None = None) -> ConfigLoadError:
        return ConfigLoadError([Diagnostic(ERROR, "config-unreadable", message, file=str(path), hint=hint)])

    try:
        if path.is_symlink() and not path.exists():
            raise fail(f"config path is a symbolic link that leads nowhere (a loop, or its target is missing): {path}")
        if not path.exists():
            raise fail(f"config file not found: {path}", "check the path; it is resolved from the current directory")
        if path.is_dir():
            raise fail(f"expected a YAML or JSON config file but got a directory: {path}")
        raw = path.read_bytes()
    except (OSError, ValueError) as exc:  # a name too long or with a NUL byte, a permission denied
        raise fail(f"cannot read config: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"config is not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})",
                   "save the file as UTF-8") from exc
    return text.lstrip("\ufeff")


def _parse_yaml(text: str, file: str) -> tuple[dict, dict, dict]:
    try:
        loader = OmegaConfLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character such as NUL: PyYAML checks them all up front
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise ConfigLoadError([Diagnostic(ERROR, "yaml-syntax", f"invalid YAML: character {exc.character:#06x} "
                                          "is not allowed in YAML", file=file, line=line, column=column,
                                          hint="delete it; YAML allows tabs and newlines but no other control "
                                               "characters")]) from exc
    try:
        node = loader.get_single_node()
        values = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(filter(None, [exc.context, exc.problem]))
        raise ConfigLoadError([Diagnostic(
            ERROR, "yaml-syntax", f"invalid YAML: {problem}", file=file,
            line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
        )]) from exc
    except yaml.YAMLError as exc:
        raise ConfigLoadError([Diagnostic(ERROR, "yaml-syntax", f"invalid YAML: {exc}", file=file)]) from exc
    except RecursionError as exc:
        raise ConfigLoadError([Diagnostic(ERROR, "yaml-syntax", "YAML nesting is too deep to be a config",
                                          file=file)]) from exc
    finally:
        loader.dispose()
    values = _require_mapping(values, file)
    assert node is not None  # a document without a node is empty, which _require_mapping refused
    _limit_expansion(node, file)
    key_positions: dict = {}
    value_positions: dict = {}
    index_positions(node, (), file, key_positions, value_positions)
    return values, key_positions, value_positions


def _limit_expansion(node: yaml.Node, file: str) -> None:
    """Refuse aliases that add more than MAX_EXPANDED_VALUES values when expanded. Only what aliases add counts
    (the expanded size minus the values written out): a large config without aliases is fine."""
    sizes: dict[int, int] = {}

    def size(current: yaml.Node) -> int:
        if id(current) not in sizes:
            children = current.value if isinstance(current, yaml.SequenceNode) else [
                item for pair in current.value for item in pair] if isinstance(current, yaml.MappingNode) else []
            sizes[id(current)] = 1 + sum(size(child) for child in children)
        return sizes[id(current)]

    # an alias is the same node object appearing again, so the distinct nodes are the values written out
    if size(node) - len(sizes) > MAX_EXPANDED_VALUES:
        raise ConfigLoadError([Diagnostic(
            ERROR, "yaml-aliases", f"YAML aliases expand to more than {MAX_EXPANDED_VALUES:,} values (an alias bomb?); "
            "OmegaConf copies every alias, so LLaMA-Factory would exhaust memory", file=file, line=1, column=1,
            hint="write the values out instead of nesting aliases")])


def _require_mapping(values: Any, file: str) -> dict:
    """`values` if it is a mapping; ConfigLoadError otherwise."""
    if values is None:
        raise ConfigLoadError([Diagnostic(ERROR, "config-empty", "the config is empty",
                                          file=file, hint="a dpo config needs at least model_name_or_path, stage, "
                                                          "dataset and output_dir")])
    if not isinstance(values, dict):
        raise ConfigLoadError([Diagnostic(ERROR, "config-not-mapping",
                                          "expected a mapping of keys to values at the top level but got a "
                                          f"{type(values).__name__}",
                                          file=file, line=1, column=1)])
    return values


def index_positions(node: yaml.Node, prefix: tuple, file: str, keys: dict, values: dict) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            for name in _key_names(key_node):
                key_path = prefix + (name,)
                keys[key_path] = Position(file, key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                values[key_path] = Position(file, value_node.start_mark.line + 1, value_node.start_mark.column + 1)
            index_positions(value_node, key_path, file, keys, values)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            values[prefix + (index,)] = Position(file, item.start_mark.line + 1, item.start_mark.column + 1)
            index_positions(item, prefix + (index,), file, keys, values)


def _key_names(key_node: yaml.Node) -> tuple:
    """The key as written, and as the checks spell a non-string key (`~:` -> 'null', `true:` -> 'True')."""
    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:str":
        return (key_node.value,) if isinstance(key_node, yaml.ScalarNode) else (str(key_node.value),)
    try:
        value = OmegaConfLoader("").construct_object(key_node)
    except (yaml.YAMLError, ValueError):
        return (key_node.value,)
    return (key_node.value, "null" if value is None else str(value))


def _parse_json(text: str, file: str) -> tuple[dict, dict, dict]:
    try:
        values = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise ConfigLoadError([Diagnostic(ERROR, "json-syntax", f"invalid JSON: {exc.msg}", file=file,
                                          line=exc.lineno, column=exc.colno)]) from exc
    except _DuplicateKey as exc:
        raise ConfigLoadError([Diagnostic(ERROR, "duplicate-key", f"duplicate key '{exc.key}'", file=file,
                                          path=exc.key, hint="keep one of them")]) from exc
    except RecursionError as exc:
        raise ConfigLoadError([Diagnostic(ERROR, "json-syntax", "JSON nesting is too deep to be a config",
                                          file=file)]) from exc
    _require_mapping(values, file)
    # JSON is YAML, so the YAML composer gives us positions; values still come from json.
    key_positions: dict = {}
    value_positions: dict = {}
    try:
        node = yaml.compose(text, Loader=OmegaConfLoader)
        if node is not None:
            index_positions(node, (), file, key_positions, value_positions)
    except (yaml.YAMLError, RecursionError):
        pass
    return values, key_positions, value_positions


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=value` as OmegaConf.from_dotlist parses it: the value is read as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigLoadError([Diagnostic(
            ERROR, "override-syntax", f"expected key=value but got '{item}'", file=OVERRIDES_FILE,
            hint="overrides follow the config path as key=value, e.g. pref_beta=0.2"
            + ("; '--key value' flags are not read after a YAML config" if item.startswith("--") else ""),
        )])
    return key.split("."), _override_value(raw)


def _override_value(raw: str) -> Any:
    """The value read as YAML with OmegaConf's rules (a SafeLoader), or the raw text if it is not YAML."""
    if raw == "":
        return ""
    loader = OmegaConfLoader(raw)
    try:
        return loader.get_single_data()
    except (yaml.YAMLError, RecursionError):
        return raw
    finally:
        loader.dispose()


def apply_overrides(loaded: LoadedConfig, overrides: list[str] | tuple[str, ...]) -> None:
    for item in overrides:
        keys, value = parse_override(item)
        target = loaded.values
        for key in keys[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[keys[-1]] = value
        loaded.overridden.add(keys[0])
        position = Position(OVERRIDES_FILE)
        for depth in range(1, len(keys) + 1):  # `a.b=1` is located at the command line for `a` too
            loaded.key_positions[tuple(keys[:depth])] = position
            loaded.value_positions[tuple(keys[:depth])] = position


def interpolation_warnings(loaded: LoadedConfig) -> list[Diagnostic]:
    """LLaMA-Factory does not resolve `${...}`: the literal text reaches the trainer."""
    found = []
    for key, value in loaded.values.items():
        if isinstance(value, str) and "${" in value:
            found.append(loaded.diagnostic(
                WARNING, "interpolation-unresolved",
                f"{key}: '{value}' contains an OmegaConf interpolation, which LLaMA-Factory does not resolve "
                "(it reads the config with resolve=False), so this literal text is used",
                key, hint="write the value out in full",
            ))
    return found
