"""Settings objects (frozen dataclasses) made from plain values: a rule's params, a JSON file, a manifest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from .errors import DdpmsegError

T = TypeVar("T")


def from_plain(cls: type[T], values: Mapping[str, Any], *, what: str) -> T:
    """``cls(**values)`` when ``values`` holds exactly ``cls``'s fields; else one line naming the first
    unknown or missing ``what`` setting."""
    if not isinstance(values, Mapping):
        raise DdpmsegError(f"{what} settings must be a mapping, not {type(values).__name__}")
    names = [field.name for field in fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise DdpmsegError(f"{what} setting '{unknown[0]}' is unknown (known: {', '.join(names)})")
    missing = [name for name in names if name not in values]
    if missing:
        raise DdpmsegError(f"{what} setting '{missing[0]}' is missing")
    return cls(**values)
