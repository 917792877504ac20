"""isinstance for type annotations, shared by NetSpec's and the study config's strict checks."""

from __future__ import annotations

import types
import typing
from typing import Any


def matches(value: Any, annotation: Any) -> bool:
    """Whether `value` fits `annotation`: unions, None, Any, list[...], dict[...], fixed
    tuples, and numbers where a bool is never an int or a float (YAML's `true` is no width)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(matches(k, args[0]) and matches(v, args[1]) for k, v in value.items())
    if origin is tuple:
        return isinstance(value, tuple) and len(value) == len(args) and all(map(matches, value, args))
    if annotation in (int, float) and isinstance(value, bool):
        return False
    if annotation is float:
        return isinstance(value, (int, float))
    return isinstance(value, annotation)


def type_text(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
