"""Inputs of a traced call: its arguments bound to parameter names.

The signature is inspected once per decorated function.  Common calls (plain
positional-or-keyword parameters) are bound by a direct loop; anything else goes
through ``inspect.Signature.bind``.  Defaults are applied; ``self`` and ``cls``
are left out.  Binding never raises: arguments the function would reject are
recorded as ``{"args": [...], "kwargs": {...}}`` and the call fails by itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Final

__all__ = ["ArgumentBinder"]

_PLAIN: Final = inspect.Parameter.POSITIONAL_OR_KEYWORD
_BOUND_FIRST: Final = ("self", "cls")


class ArgumentBinder:
    """Binds call arguments of one function to its parameter names."""

    __slots__ = ("_defaults", "_fast", "_names", "_signature", "_skip")

    def __init__(self, func: Callable[..., Any]) -> None:
        try:
            signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):  # some builtins have no signature
            signature = None
        params = list(signature.parameters.values()) if signature is not None else []
        self._signature = signature
        self._skip = (
            1 if params and params[0].name in _BOUND_FIRST and params[0].kind <= _PLAIN else 0
        )
        self._names = tuple(p.name for p in params)
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}
        self._fast = signature is not None and all(p.kind is _PLAIN for p in params)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name, in signature order."""
        if self._fast:
            bound = self._bind_plain(args, kwargs)
            if bound is not None:
                return bound
        return self._bind_general(args, kwargs)

    def _bind_plain(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        names = self._names
        count = len(args)
        if count > len(names):
            return None
        if not kwargs and count == len(names):
            return dict(zip(names[self._skip :], args[self._skip :], strict=True))
        bound = {}
        used = 0
        defaults = self._defaults
        for index in range(self._skip, len(names)):
            name = names[index]
            if index < count:
                if name in kwargs:
                    return None  # given twice: let the call raise
                bound[name] = args[index]
            elif name in kwargs:
                bound[name] = kwargs[name]
                used += 1
            elif name in defaults:
                bound[name] = defaults[name]
            else:
                return None  # missing
        if used != len(kwargs):
            return None  # unexpected keyword
        return bound

    def _bind_general(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self._signature is None:
            return {"args": list(args), "kwargs": kwargs}
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError:
            return {"args": list(args), "kwargs": kwargs}
        bound.apply_defaults()
        arguments = bound.arguments
        if self._skip:
            arguments.pop(self._names[0], None)
        return dict(arguments)
