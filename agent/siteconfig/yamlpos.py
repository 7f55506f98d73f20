"""YAML loading that remembers where every key and item stands in the file.

PyYAML's composer gives a node tree with marks; we build the plain Python
value from it with the safe constructor and, alongside, a map from key path
(``("buses", 0, "devices", 2, "baudrate")``) to 1-based (line, column).
Duplicate keys, which PyYAML silently folds into the last one, are errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

PathKey = tuple[str | int, ...]

try:  # the C loader is much faster on big files; both give the same nodes
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader


@dataclass(frozen=True, slots=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(frozen=True, slots=True)
class YamlProblem:
    position: Position | None
    path: PathKey
    message: str


class YamlError(Exception):
    """The text is not YAML we can read; carries located problems."""

    def __init__(self, problems: list[YamlProblem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def _pos(mark: Any) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def _walk(
    node: yaml.Node, path: PathKey, marks: dict[PathKey, Position], problems: list[YamlProblem]
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, Position] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key: Any = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            here = _pos(key_node.start_mark)
            if key is not None and key in seen:
                first = seen[key]
                problems.append(
                    YamlProblem(
                        here,
                        (*path, key),
                        f"key {key!r} appears twice (first at line {first.line}); "
                        "remove one of them",
                    )
                )
                continue
            if key is not None:
                seen[key] = here
                marks[(*path, key)] = here
                _walk(value_node, (*path, key), marks, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            marks[(*path, i)] = _pos(item.start_mark)
            _walk(item, (*path, i), marks, problems)


def load(text: str) -> tuple[Any, dict[PathKey, Position]]:
    """Parse one YAML document; return its value and the position map.

    Raises YamlError with the line and column of a syntax error or of a
    duplicate key.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        marks: dict[PathKey, Position] = {(): _pos(node.start_mark)}
        problems: list[YamlProblem] = []
        _walk(node, (), marks, problems)
        if problems:
            raise YamlError(problems)
        value = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(s for s in (e.context, e.problem) if s)
        raise YamlError(
            [YamlProblem(_pos(mark) if mark else None, (), f"YAML syntax error: {what}")]
        ) from None
    except yaml.YAMLError as e:
        raise YamlError([YamlProblem(None, (), f"YAML error: {e}")]) from None
    finally:
        loader.dispose()
    return value, marks
