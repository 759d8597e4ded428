"""Settings dataclasses filled from environment variables, documented in one place.

A field declares its variable and help text with :func:`env`; :func:`from_env` parses
each value by the field's type, and :func:`markdown_table` renders the reference that
the README and the chart's documentation embed, so the three cannot disagree.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


class Secret:
    """A secret setting's value. Its ``repr`` and ``str`` never show it, so a settings
    object can be logged or printed in a traceback; :meth:`reveal` is the one way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def reveal(secret: Secret | None) -> str | None:
    return None if secret is None else secret.reveal()


def env(name: str, default: Any, help: str) -> Any:
    """Declare a field read from the variable ``name``; type it :class:`Secret` to keep
    its value out of every repr and error message."""
    return dataclasses.field(default=default, metadata={"env": name, "help": help})


def from_env(cls: type[T], environ: Mapping[str, str]) -> T:
    """Build ``cls`` from ``environ``; unset or empty variables keep their defaults."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.metadata.get("env")
        if name is None:
            continue
        raw = environ.get(name, "")
        if raw == "":
            continue
        try:
            values[field.name] = _parse(raw, hints[field.name])
        except ValueError as exc:
            shown = "<hidden>" if _is_secret(hints[field.name]) else repr(raw)
            raise SettingsError(f"{name}={shown}: {exc}") from None
    return cls(**values)


def markdown_table(cls: type[Any]) -> str:
    """The variables of ``cls`` as a Markdown table: name, default, meaning."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for field in dataclasses.fields(cls):
        name = field.metadata.get("env")
        if name is None:
            continue
        default = field.default
        if isinstance(default, tuple):
            default = ",".join(str(v) for v in default)
        shown = "" if default is None or default == "" else f"`{default}`"
        rows.append(f"| `{name}` | {shown} | {field.metadata['help']} |")
    return "\n".join(rows)


def _parse(raw: str, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _parse(raw, inner[0])
    if hint is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("expected true or false")
    if hint is int:
        return int(raw)
    if hint is float:
        return float(raw)
    if hint is str:
        return raw
    if hint is Secret:
        return Secret(raw)
    if origin is tuple:
        (item, *_rest) = typing.get_args(hint)
        return tuple(_parse(part.strip(), item) for part in raw.split(",") if part.strip())
    raise TypeError(f"unsupported settings type {hint!r}")


def _is_secret(hint: Any) -> bool:
    return hint is Secret or Secret in typing.get_args(hint)
