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
