"""Records: the package's one idiom for immutable value objects.

A record is a plain slotted class whose ``__init__`` assigns each field
normally (``self.client = client``), so mypy checks every constructor against
the class annotations and a misspelt field fails both mypy and the run
(``__slots__`` has no room for it). :class:`Record` adds what a frozen
dataclass would: each slot can be assigned once (in ``__init__``) and never
again, value equality and hashing, a ``repr`` and pickling.

Not dataclasses: ``import dataclasses`` loads ``inspect``, and generating the
classes costs ~7 ms of import time (``bench/importtime.py``), more than the
rest of the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Record"]


class Record:
    """An immutable value object whose fields are its ``__slots__``.

    Subclasses list each field once in ``__slots__`` and assign it once in
    ``__init__``; a second assignment, or a deletion, raises
    :class:`AttributeError`.
    """

    __slots__: tuple[str, ...] = ()

    if not TYPE_CHECKING:  # hidden from mypy, which then checks assignments against the fields

        def __setattr__(self, name: str, value: Any) -> None:
            if hasattr(self, name):
                raise AttributeError(f"{type(self).__name__} is immutable")
            object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record) or type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), dict(zip(self.__slots__, self._values(), strict=True))))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


def _rebuild(cls: type[Record], values: dict[str, Any]) -> Record:
    """Unpickle a record: its fields as stored, without running ``__init__``'s checks."""
    record = cls.__new__(cls)
    for name, value in values.items():
        object.__setattr__(record, name, value)
    return record
