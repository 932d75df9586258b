"""A guest's YAML (netplan, cloud-init) composed with the safe loader into nodes that keep their line numbers,
refused when aliases would expand it past a bound (a "billion laughs") or it nests too deep to compose."""

from __future__ import annotations

import yaml

NODES_MOST = 100_000  # nodes once every alias is expanded


class YamlRefused(ValueError):
    pass


def compose(text: str) -> yaml.Node | None:
    """The document's root node, or None for an empty document. Raises YamlRefused."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise YamlRefused(f"not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise YamlRefused("nested too deep to read") from None
    if node is not None and _expanded(node, {}) > NODES_MOST:
        raise YamlRefused(f"its aliases expand it past {NODES_MOST} nodes (an alias bomb?)")
    return node


def _expanded(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes the document holds once aliases are expanded, computed once per distinct node."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = NODES_MOST + 1  # a node reached again while being counted is a cycle: too many
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded(child, sizes)
            if total > NODES_MOST:
                break
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            total += _expanded(key, sizes) + _expanded(value, sizes)
            if total > NODES_MOST:
                break
    sizes[id(node)] = total
    return total


def get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value of `key` in a mapping node (the last one when repeated, as the loader would), or None."""
    if not isinstance(node, yaml.MappingNode):
        return None
    found = None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            found = v
    return found


def items(node: yaml.Node | None) -> list[tuple[str, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        return []
    return [(k.value, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]


def scalar(node: yaml.Node | None) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1
