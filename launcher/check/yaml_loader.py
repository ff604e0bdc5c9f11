"""PyYAML's SafeLoader with OmegaConf's rules, and bounds against hostile YAML.

OmegaConf (omegaconf/_yaml.py: get_yaml_loader) reads `5e-6` as a float, has no timestamps and rejects
duplicate keys; LLaMA-Factory reads configs and `key=value` overrides through it.
"""

from __future__ import annotations

import re
from typing import Any, cast

import yaml

# Bounds that keep hostile YAML from hanging or exhausting memory; real configs are 2-3 levels deep and a
# few hundred values. Deeper flow nesting also makes PyYAML's scanner quadratic (10,000 '[' took 4.6 s).
MAX_NESTING = 100
MAX_EXPANDED_VALUES = 10_000  # values aliases add once expanded, as OmegaConf copies them ("billion laughs")


class OmegaConfLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with OmegaConf's changes (omegaconf/_utils.py: get_yaml_loader), plus the
    nesting and recursive-alias limits above, raised as YAML errors with the position."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._depth = 0
        self._open_anchors: set = set()

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= MAX_NESTING:
            raise yaml.scanner.ScannerError(None, None, f"nesting deeper than {MAX_NESTING} levels", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:  # `a: &x [*x]`: OmegaConf recurses until RecursionError
                raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor} is used inside its own "
                                                  f"anchor &{event.anchor}", _mark(event))
            return super().compose_node(parent, index)
        if self._depth >= MAX_NESTING:
            raise yaml.composer.ComposerError(None, None, f"nesting deeper than {MAX_NESTING} levels", _mark(event))
        anchor = event.anchor
        self._depth += 1
        self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(anchor)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag != yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG:
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key_node.value}", key_node.start_mark,
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


OmegaConfLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:
         [-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)
OmegaConfLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in OmegaConfLoader.yaml_implicit_resolvers.items()
}


def _mark(event: yaml.Event) -> yaml.error.Mark | None:
    """The event's start mark; PyYAML's stubs type the C loader's marks apart from the pure-Python ones we get."""
    return cast("yaml.error.Mark | None", event.start_mark)
