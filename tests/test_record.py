"""Records: one idiom, immutable after __init__, equal by value, picklable."""

from __future__ import annotations

import pickle

import pytest

import requests_tokenrotate as rt
from requests_tokenrotate._answers import Answer
from requests_tokenrotate._codec import Stored


def test_a_field_is_assigned_once_and_never_again():
    """__init__ assigns each slot once; a later assignment or deletion raises."""
    token = rt.Token("a", expires_at=10.0)
    with pytest.raises(AttributeError, match="immutable"):
        token.access_token = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del token.scope
    assert token.access_token == "a"


def test_a_misspelt_field_fails_at_run_time():
    """A name outside __slots__ cannot be set (mypy reports it too)."""
    answer = Answer(200)
    with pytest.raises(AttributeError):
        answer.stauts = 500  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "record",
    [
        rt.Token("a", refresh_token="r", expires_at=10.0, obtained_at=1.0),
        rt.RefreshPolicy(12.0),
        Answer(401, {"a": "b"}, b"x", None, ""),
        Stored("k", rt.Token("a"), 3),
    ],
)
def test_records_compare_hash_and_pickle_by_value(record):
    """Equal fields make equal records with equal hashes; a pickle round trip keeps them."""
    copy = pickle.loads(pickle.dumps(record))
    assert copy == record
    assert type(copy) is type(record)
    if not isinstance(record, Answer):  # its headers are a dict: unhashable by design
        assert hash(copy) == hash(record)
    with pytest.raises(AttributeError, match="immutable"):
        object.__getattribute__(copy, "__setattr__")(type(record).__slots__[0], None)


def test_records_of_different_types_are_not_equal():
    """A record never equals a record of another type with the same values."""
    assert rt.RefreshPolicy(1.0) != Stored("k", rt.Token("a"), 0)
