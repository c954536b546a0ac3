"""Private files: one set of checks for every file the library reads or locks."""

from __future__ import annotations

import logging
import os
import stat
import time

import pytest

from requests_tokenrotate._files import (
    STALE_TEMP_AGE,
    TEMP_PREFIX,
    UnsafeFile,
    open_private,
    read_private,
    remove_stale_temp_files,
)

OTHER_UID = 65534  # "nobody"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_a_private_file_is_read_and_an_absent_one_is_none(tmp_path):
    """A regular 0600 file of ours reads back; a missing file or directory is None."""
    path = tmp_path / "f.json"
    path.write_bytes(b"{}")
    os.chmod(path, 0o600)
    assert read_private(path) == b"{}"
    assert read_private(tmp_path / "absent.json") is None
    assert read_private(tmp_path / "no-dir" / "absent.json") is None


def test_a_fifo_socket_or_directory_is_refused_without_blocking(tmp_path, plant, bounded):
    """Reading, or opening for the lock (append, create), names what is in the way."""
    path = tmp_path / "f.json"
    plant(path)
    name = {"fifo": "FIFO", "socket": "socket", "directory": "directory"}[plant.kind]
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_APPEND | os.O_CREAT):
        with pytest.raises(UnsafeFile, match=f"it is a {name}") as info:
            bounded(lambda flags=flags: os.close(open_private(path, flags)), release=[path])
        assert info.value.filename == str(path)
    with pytest.raises(UnsafeFile, match=name):
        bounded(lambda: read_private(path), release=[path])


def test_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    """O_NOFOLLOW: a planted symlink is refused, also when opening to create."""
    target = tmp_path / "target"
    target.write_text("keep")
    os.symlink(target, tmp_path / "f.lock")
    with pytest.raises(UnsafeFile, match="symbolic link"):
        open_private(tmp_path / "f.lock", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    assert target.read_text() == "keep"


def test_a_hard_link_is_refused_and_the_other_file_keeps_its_mode(tmp_path):
    """A second link would let a mode repair (or a read) reach another file."""
    victim = tmp_path / "victim.txt"
    victim.write_text("not a token")
    os.chmod(victim, 0o644)
    (tmp_path / "tokens").mkdir(mode=0o700)
    os.link(victim, tmp_path / "tokens" / "k.json")
    with pytest.raises(UnsafeFile, match="2 hard links"):
        read_private(tmp_path / "tokens" / "k.json")
    assert mode(victim) == 0o644


def test_a_loose_mode_is_repaired_through_the_descriptor(tmp_path, caplog):
    """A 0644 file of ours is read and set to 0600, with a WARNING."""
    path = tmp_path / "f.json"
    path.write_bytes(b"{}")
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING):
        assert read_private(path) == b"{}"
    assert mode(path) == 0o600
    assert "0600" in caplog.text


def test_a_file_over_the_size_cap_is_refused(tmp_path):
    """Reads are bounded: a file over max_bytes is an error, not a huge allocation."""
    path = tmp_path / "f.json"
    path.write_bytes(b"x" * 101)
    os.chmod(path, 0o600)
    assert read_private(path, 101) == b"x" * 101
    with pytest.raises(UnsafeFile, match="larger than 100 bytes"):
        read_private(path, 100)


@as_root
def test_another_users_file_or_directory_is_refused_for_reading(tmp_path):
    """Owner checks apply to reads: the file's owner, and its directory's."""
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    (theirs / "f.json").write_bytes(b"{}")
    os.chmod(theirs / "f.json", 0o600)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeFile, match="another user") as info:
        read_private(theirs / "f.json")
    assert info.value.filename == str(theirs)
    os.chown(theirs, 0, 0)
    os.chown(theirs / "f.json", OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeFile, match="another user") as info:
        read_private(theirs / "f.json")
    assert info.value.filename == str(theirs / "f.json")


def test_only_old_temp_files_of_ours_are_removed(tmp_path, caplog):
    """Ours (prefix, uid, regular) and older than STALE_TEMP_AGE go; the rest stays."""
    stale = tmp_path / f"{TEMP_PREFIX}stale.json"
    fresh = tmp_path / f"{TEMP_PREFIX}fresh.json"
    foreign = tmp_path / "other-tool.tmp"
    link = tmp_path / f"{TEMP_PREFIX}link.json"
    for path in (stale, fresh, foreign):
        path.write_text("refresh-secret")
    os.symlink(foreign, link)
    for path in (stale, foreign, link):
        age(path, STALE_TEMP_AGE + 60)
    age(fresh, STALE_TEMP_AGE - 60)
    with caplog.at_level(logging.WARNING):
        assert remove_stale_temp_files(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [fresh.name, foreign.name, link.name]
    )
    assert "secret" not in caplog.text
    assert remove_stale_temp_files(tmp_path / "absent") == 0


@as_root
def test_another_users_temp_file_is_kept(tmp_path):
    """A temp file with our prefix but another owner is not ours to remove."""
    theirs = tmp_path / f"{TEMP_PREFIX}theirs.json"
    theirs.write_text("x")
    os.chown(theirs, OTHER_UID, OTHER_UID)
    age(theirs, STALE_TEMP_AGE + 60)
    assert remove_stale_temp_files(tmp_path) == 0
    assert theirs.exists()
