"""Pickling for objects that hold thread locks: a mixin with no other dependency.

Stores, the token endpoint client, discovery and the gate hold
:class:`threading.Lock` objects, which cannot be pickled; requests'
``HTTPAdapter`` solves the same problem with ``__getstate__``/``__setstate__``.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

__all__ = ["PicklesWithoutLocks"]


class PicklesWithoutLocks:
    """Pickles without its thread locks and makes new ones on load (as HTTPAdapter does).

    Subclasses name their lock attributes in ``_LOCKS``.
    """

    _LOCKS: ClassVar[tuple[str, ...]] = ()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._LOCKS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in self._LOCKS:
            setattr(self, name, threading.Lock())
