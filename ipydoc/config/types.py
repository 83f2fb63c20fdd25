"""Value types of the configuration file and the checker that fills a section from a table.

Every section is a dataclass whose type hints say what each key holds; :func:`fill` sets
the keys of a TOML table on it and refuses, naming the key, an unknown key or a value of
the wrong type.  A dataclass hint (or ``X | None``) is a nested table, ``dict[str, X]`` a
table of them (``[auth.github]``, ``[auth.oidc.NAME]``), so the provider tables get the
same strictness as every other table without this module knowing them.
"""

from __future__ import annotations

import re
import types
from dataclasses import fields, is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

from ipydoc.config.errors import ConfigError

# Field metadata: a single string is read as a one-element list (``listen = "tcp:80"``).
_ONE_OR_MANY = "one_or_many"
ONE_OR_MANY = {_ONE_OR_MANY: True}

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"2G"`` → bytes.  Units are binary (as Docker reads them)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 512M or 2G)")
    scale = 1024 ** " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * scale)


def _table_class(hint: Any) -> type | None:
    """The dataclass a hint of a nested table names (``X`` or ``X | None``), else None."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else None
    return hint if isinstance(hint, type) and is_dataclass(hint) else None


def check_type(key: str, value: Any, hint: Any, one_or_many: bool = False) -> Any:
    """``value`` as the type ``hint`` says (ints widen to floats, tables become their
    dataclass); ConfigError naming ``key`` if it is not of that type."""
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{key} must be {expected}, not {type(value).__name__} {value!r}")

    table = _table_class(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise bad("a string")
    elif table is not None:
        if not isinstance(value, dict):
            raise bad("a table")
        section = table()
        fill(section, key, value)
        value = section
    elif get_origin(hint) is dict and (_table_class(get_args(hint)[1])
                                       or get_args(hint)[1] in (list[str], str)):
        item = get_args(hint)[1]
        if not isinstance(value, dict):
            raise bad("a table of tables" if _table_class(item) else
                      "a table of strings" if item is str else "a table of lists of strings")
        value = {k: check_type(f"{key}.{k}", v, item) for k, v in value.items()}
    elif hint == list[int]:
        if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise bad("a list of whole numbers")
    elif hint == list[str]:
        if isinstance(value, str) and one_or_many:
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
    elif hint == list[list[str]]:
        if not isinstance(value, list) or not all(
                isinstance(v, list) and all(isinstance(s, str) for s in v) for v in value):
            raise bad("a list of lists of strings")
    else:
        raise TypeError(f"{key}: no checker for the type {hint!r}")
    return value


def fill(section: Any, name: str, table: dict[str, Any]) -> None:
    """Set the keys of the TOML ``table`` named ``name`` on the dataclass ``section``."""
    hints = get_type_hints(type(section))
    one_or_many = {f.name for f in fields(section) if f.metadata.get(_ONE_OR_MANY)}
    for key, v in table.items():
        if key not in hints:
            raise ConfigError(
                f"unknown key {name}.{key} (known in [{name}]: {', '.join(hints)})"
            )
        setattr(section, key, check_type(f"{name}.{key}", v, hints[key], key in one_or_many))
