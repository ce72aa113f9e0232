"""YAML loading with libyaml's C parser when PyYAML has it (about 10x faster than the pure-Python one).

Same results and errors as ``yaml.safe_load`` (the C loader is the safe loader, compiled).
"""

from __future__ import annotations

from typing import Any

import yaml

_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE):  # type: ignore[misc,valid-type]
    """The safe loader, refusing a mapping that repeats a key (YAML keeps the last one silently: a terms
    file with ``term_years`` twice would run the second)."""


def _mapping_without_repeats(loader: Any, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # '<<' merges: explicit keys may override them
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            repeated = key in seen
        except TypeError:  # an unhashable key: the constructor reports it
            continue
        if repeated:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)
_LOADER = _Loader


def load_yaml(stream: Any) -> Any:
    """``yaml.safe_load`` through the C parser when available, refusing repeated keys in a mapping."""
    return yaml.load(stream, Loader=_LOADER)  # noqa: S506 - the safe loader


#: bounds of YAML text from outside (an API request): what a scenario or terms document needs, many times over
UNTRUSTED_MAX_CHARS = 64 * 1024
UNTRUSTED_MAX_DEPTH = 32
UNTRUSTED_MAX_NODES = 20_000


def load_untrusted_yaml(text: str, *, max_chars: int = UNTRUSTED_MAX_CHARS, max_depth: int = UNTRUSTED_MAX_DEPTH,
                        max_nodes: int = UNTRUSTED_MAX_NODES) -> Any:
    """:func:`load_yaml` of text from outside the server (an API request's inline document), within bounds.

    Checked on the parser's events before anything is built: at most ``max_chars`` characters, ``max_depth``
    nested collections and ``max_nodes`` nodes, and no anchors or aliases. Deep nesting crashes the C
    loader's recursive composer (the process, not the request), and aliases expand: a few hundred bytes of
    nested anchors make gigabytes of a document. Raises ``ValueError`` naming the bound, or
    ``yaml.YAMLError`` for text that is not YAML."""
    if not isinstance(text, str):
        raise ValueError("a YAML document must be text")
    if len(text) > max_chars:
        raise ValueError(f"is {len(text):,} characters long; at most {max_chars:,} are accepted")
    depth = nodes = 0
    for ev in yaml.parse(text, Loader=_BASE):  # the event parser is iterative: nothing is built here
        if isinstance(ev, (yaml.AliasEvent,)) or getattr(ev, "anchor", None) is not None:
            raise ValueError("YAML anchors and aliases (&name, *name) are not accepted")
        if isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > max_depth:
                raise ValueError(f"nests more than {max_depth} levels deep")
        elif isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
        if isinstance(ev, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            nodes += 1
            if nodes > max_nodes:
                raise ValueError(f"has more than {max_nodes:,} values")
    return load_yaml(text)


class DataFileError(ValueError):
    """A YAML/JSON data file cannot be read or parsed; the message names the file."""


def read_data_file(path: Any, what: str = "file") -> tuple[Any, bytes]:
    """Parse a YAML (or, by its ``.json`` suffix, JSON) data file; return the content and its bytes.

    Raises :class:`DataFileError` naming the file: unreadable, or not valid YAML / JSON.
    """
    import json
    from pathlib import Path

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DataFileError(f"{p}: cannot read {what} ({exc.strerror})") from None
    is_json = p.suffix.lower() == ".json"
    try:
        return (json.loads(data, object_pairs_hook=_object_without_repeats) if is_json else load_yaml(data)), data
    except (ValueError, UnicodeDecodeError, yaml.YAMLError) as exc:  # JSONDecodeError is a ValueError
        raise DataFileError(f"{p}: not valid {'JSON' if is_json else 'YAML'}: {exc}") from None


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a repeated key (``json`` keeps the last one silently)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out
