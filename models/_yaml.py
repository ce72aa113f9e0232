"""YAML loading with libyaml's C parser when PyYAML has it (about 10x faster than the pure-Python one).

Same results and errors as ``yaml.safe_load`` (the C loader is the safe loader, compiled).
"""

from __future__ import annotations

from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(stream: Any) -> Any:
    """``yaml.safe_load`` through the C parser when available."""
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
        return (json.loads(data) if is_json else load_yaml(data)), data
    except (json.JSONDecodeError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataFileError(f"{p}: not valid {'JSON' if is_json else 'YAML'}: {exc}") from None
