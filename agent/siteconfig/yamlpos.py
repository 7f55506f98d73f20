"""YAML loading that remembers where every key and item stands in the file.

PyYAML's composer gives a node tree with marks; we build the plain Python
value from it with the safe constructor and, alongside, a map from key path
(``("buses", 0, "devices", 2, "baudrate")``) to 1-based (line, column).
Duplicate keys, which PyYAML silently folds into the last one, are errors.

A config is data typed by hand, so what YAML offers beyond that is refused
with a located problem before anything is built: explicit tags (``!!int``,
``!!timestamp``, ``!custom``: the plain value says it), nesting deeper than
``MAX_DEPTH``, more than ``MAX_ALIASES`` aliases, an anchor that contains its
own alias, aliases that expand to more than ``MAX_ALIASED_NODES`` values (a
"billion laughs" file), and numbers longer than ``MAX_NUMBER_CHARS``. Dates
stay text (no implicit timestamps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import yaml

PathKey = tuple[str | int, ...]

try:  # the C loader is much faster on big files; both give the same nodes
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Base = yaml.SafeLoader

_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """The safe loader without implicit timestamps: `2026-13-45` is text, never a crash."""

    yaml_implicit_resolvers: ClassVar[dict[Any, list[tuple[str, Any]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }


MAX_DEPTH = 32  # nested mappings and lists, aliases included
MAX_ALIASES = 100  # uses of *anchor in one file
MAX_ALIASED_NODES = 10_000  # values reached through aliases, counted every time
MAX_NUMBER_CHARS = 64
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


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


def _refuse(mark: Any, message: str) -> YamlError:
    return YamlError([YamlProblem(_pos(mark) if mark else None, (), message)])


def _check_events(text: str) -> None:
    """Refuse explicit tags, deep nesting and too many aliases, from the parser's
    events (before any node is built). Raises YamlError or yaml.YAMLError."""
    problems: list[YamlProblem] = []
    depth = aliases = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _refuse(
                    event.start_mark,
                    f"nested more than {MAX_DEPTH} levels deep; a site config never needs that",
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _refuse(
                    event.start_mark,
                    f"more than {MAX_ALIASES} aliases (*name); write the values out",
                )
        tag = getattr(event, "tag", None)
        if tag is not None and isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            problems.append(
                YamlProblem(
                    _pos(event.start_mark),
                    (),
                    f"explicit YAML tag {shown[:40]!r} is not allowed; remove it and write "
                    "the plain value (quote text that looks like a number)",
                )
            )
            if len(problems) >= 20:
                break
    if problems:
        raise YamlError(problems)


def _check_graph(root: yaml.Node) -> None:
    """Refuse an anchor that contains its own alias, aliases that expand too far
    (counting every use), and over-long numbers. Iterative: no recursion limit."""
    size: dict[int, int] = {}  # id(node) -> values in it, aliases expanded (capped)
    depth: dict[int, int] = {}
    unique = 0
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = _children(node)
            size[key] = min(1 + sum(size[id(k)] for k in kids), 10**12)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if depth[key] > MAX_DEPTH:
                raise _refuse(
                    node.start_mark,
                    f"aliases nest this more than {MAX_DEPTH} levels deep; write the values out",
                )
            continue
        if key in size:
            continue
        if key in on_path:
            raise _refuse(
                node.start_mark,
                "this anchor contains an alias of itself (a recursive value); remove that alias",
            )
        unique += 1
        if isinstance(node, yaml.ScalarNode):
            if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
                raise _refuse(
                    node.start_mark,
                    f"a number of {len(node.value)} characters; at most {MAX_NUMBER_CHARS}",
                )
            size[key], depth[key] = 1, 0
            continue
        on_path.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) in on_path:
                raise _refuse(
                    kid.start_mark,
                    "this anchor contains an alias of itself (a recursive value); "
                    "remove that alias",
                )
            if id(kid) not in size:
                stack.append((kid, False))
    if size[id(root)] > unique + MAX_ALIASED_NODES:
        raise _refuse(
            root.start_mark,
            f"aliases (*name) expand to {size[id(root)] - unique} more values than are "
            f"written, more than {MAX_ALIASED_NODES} (a 'billion laughs' file?); "
            "write the values out or use fewer aliases",
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load(text: str) -> tuple[Any, dict[PathKey, Position]]:
    """Parse one YAML document; return its value and the position map.

    Raises YamlError with the line and column of a syntax error, a duplicate
    key, or anything the module docstring refuses.
    """
    loader = _Loader(text)
    try:
        _check_events(text)
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _check_graph(node)
        marks: dict[PathKey, Position] = {(): _pos(node.start_mark)}
        problems: list[YamlProblem] = []
        _walk(node, (), marks, problems)
        if problems:
            raise YamlError(problems)
        try:
            value = loader.construct_document(node)
        except (ValueError, TypeError, OverflowError) as e:  # a scalar YAML accepts, Python not
            raise YamlError([YamlProblem(None, (), f"a value cannot be read: {e}")]) from None
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
