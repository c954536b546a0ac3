"""Stores: atomic 0600 files, safe key names, typed errors on bad files, the lock."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import threading
import time

import pytest

from requests_tokenrotate import (
    FileTokenStore,
    LockTimeout,
    MemoryTokenStore,
    Token,
    TokenStore,
    TokenStoreError,
)
from requests_tokenrotate._files import STALE_TEMP_AGE, TEMP_PREFIX
from requests_tokenrotate._stores import HOME_ENV

TOKEN = Token("access-secret", refresh_token="refresh-secret", expires_at=2e9, obtained_at=1e9)


@pytest.fixture
def store(tmp_path):
    return FileTokenStore(tmp_path / "tokens")


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_both_stores_satisfy_the_protocol(tmp_path):
    """MemoryTokenStore and FileTokenStore are TokenStores."""
    assert isinstance(MemoryTokenStore(), TokenStore)
    assert isinstance(FileTokenStore(tmp_path), TokenStore)


@pytest.mark.parametrize("factory", [MemoryTokenStore, "file"])
def test_save_load_delete_keys(factory, tmp_path):
    """A saved token loads back equal, shows in keys(), and is gone after delete."""
    s = FileTokenStore(tmp_path) if factory == "file" else factory()
    assert s.load("k") is None
    s.save("k", TOKEN)
    assert s.load("k") == TOKEN
    assert s.keys() == ["k"]
    s.delete("k")
    s.delete("k")
    assert s.load("k") is None
    assert s.keys() == []


def test_files_are_0600_and_directory_0700(store):
    """Token and lock files are 0600, the directory 0700."""
    store.save("k", TOKEN)
    with store.lock("k", 1):
        pass
    assert mode(store.directory) == 0o700
    assert mode(store.path("k")) == 0o600
    assert mode(store.lock_path("k")) == 0o600


@pytest.mark.parametrize("key", ["../x", "a/b", "/etc/passwd", "..", ".", "a\\b", "é/ü", "x" * 400])
def test_hostile_keys_stay_inside_the_directory(store, key):
    """No key escapes the directory, and keys() returns the original key."""
    store.save(key, TOKEN)
    path = store.path(key)
    assert path.parent == store.directory
    assert path.exists()
    assert store.keys() == [key]
    assert store.load(key) == TOKEN
    assert sorted(p.name for p in store.directory.parent.iterdir()) == ["tokens"]


def test_derived_keys_with_slashes_are_distinct(store):
    """profile/org/stack style keys do not collide."""
    store.save("p/org/a", TOKEN)
    store.save("p/org/b", Token("other"))
    assert store.load("p/org/a") == TOKEN
    assert store.load("p/org/b").access_token == "other"
    assert store.keys() == ["p/org/a", "p/org/b"]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b'{"version": 1, "key": "k", "token": {"access_tok', "not valid JSON"),
        (b"[1, 2]", "not a token document"),
        (b'{"version": 1, "token": {"access_token": "a", "expires_at": NaN}}', "not valid JSON"),
        (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
        (b'{"version": 1, "token": {"access_token": 5}}', "corrupt"),
        (b'{"version": "x", "token": {}}', "unknown format"),
    ],
)
def test_corrupt_file_gives_typed_error_naming_the_file(store, content, why):
    """A corrupt, truncated or empty file is a TokenStoreError naming the file; it is not rewritten."""
    store.save("k", TOKEN)
    store.path("k").write_bytes(content)
    with pytest.raises(TokenStoreError, match=why) as info:
        store.load("k")
    assert info.value.path == str(store.path("k"))
    assert str(store.path("k")) in str(info.value)
    assert "log in again" in str(info.value) or "logout" in str(info.value)
    assert "access-secret" not in str(info.value)
    assert store.path("k").read_bytes() == content


def test_newer_format_version_is_refused_not_overwritten(store):
    """A file from a newer version says to upgrade."""
    store.save("k", TOKEN)
    data = json.loads(store.path("k").read_text())
    data["version"] = 2
    store.path("k").write_text(json.dumps(data))
    with pytest.raises(TokenStoreError, match="upgrade"):
        store.load("k")


def test_loose_permissions_are_repaired_with_a_warning(store, caplog):
    """A token file readable by others is set back to 0600, with a WARNING."""
    store.save("k", TOKEN)
    os.chmod(store.path("k"), 0o644)
    with caplog.at_level(logging.WARNING):
        assert store.load("k") == TOKEN
    assert mode(store.path("k")) == 0o600
    assert "0600" in caplog.text


def test_symlinked_token_file_is_refused(store, tmp_path):
    """A token file that is a symlink is never followed."""
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    store.directory.mkdir(parents=True)
    os.symlink(target, store.path("k"))
    with pytest.raises(TokenStoreError, match="symbolic link"):
        store.load("k")


def test_symlinked_lock_file_is_refused(store, tmp_path):
    """The lock file is opened without following a planted symlink."""
    target = tmp_path / "victim"
    target.write_text("keep")
    store.directory.mkdir(parents=True)
    os.symlink(target, store.lock_path("k"))
    with pytest.raises(TokenStoreError, match="symbolic link"), store.lock("k", 1):
        pass
    assert target.read_text() == "keep"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_file_owned_by_another_user_is_refused(store):
    """A token file that belongs to someone else is refused."""
    store.save("k", TOKEN)
    os.chown(store.path("k"), 12345, 12345)
    with pytest.raises(TokenStoreError, match="another user"):
        store.load("k")


def test_save_leaves_no_temp_files(store):
    """Atomic writes leave only the token file behind."""
    for i in range(5):
        store.save("k", Token(f"a{i}"))
    assert sorted(p.name for p in store.directory.iterdir()) == ["k.json"]


def test_unwritable_directory_is_a_typed_error(tmp_path):
    """A directory that cannot be created gives TokenStoreError, not OSError."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TokenStoreError, match="cannot use the token directory"):
        FileTokenStore(blocker / "sub").save("k", TOKEN)


def test_env_overrides_the_default_directory(tmp_path, monkeypatch):
    """REQUESTS_TOKENROTATE_HOME overrides the platformdirs default."""
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    assert FileTokenStore().directory == tmp_path / "home"
    monkeypatch.delenv(HOME_ENV)
    assert "requests-tokenrotate" in str(FileTokenStore().directory)


@pytest.mark.parametrize("factory", [MemoryTokenStore, "file"])
def test_lock_times_out_while_held(factory, tmp_path):
    """A second holder gets LockTimeout after its timeout, naming the key."""
    s = FileTokenStore(tmp_path) if factory == "file" else factory()
    held, release = threading.Event(), threading.Event()

    def holder():
        with s.lock("k", 5):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(LockTimeout) as info, s.lock("k", 0.05):
            pass
        assert info.value.key == "k"
    finally:
        release.set()
        thread.join(10)
    with s.lock("k", 1):
        pass


def test_lock_file_is_never_deleted(store):
    """Releasing the lock keeps the lock file (deleting it breaks exclusion)."""
    with store.lock("k", 1):
        pass
    store.delete("k")
    assert store.lock_path("k").exists()


def test_repr_shows_no_token(store):
    """Store reprs name the place, not the content."""
    store.save("k", TOKEN)
    assert "secret" not in repr(store)
    memory = MemoryTokenStore()
    memory.save("k", TOKEN)
    assert "secret" not in repr(memory)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_directory_owned_by_another_user_is_refused(tmp_path):
    """A token directory that belongs to someone else is not written into."""
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, 12345, 12345)
    with pytest.raises(TokenStoreError, match="another user"):
        FileTokenStore(directory).save("k", TOKEN)
    assert list(directory.iterdir()) == []


# -- hostile files ------------------------------------------------------------------------------
OTHER_UID = 65534  # "nobody"


def test_fifo_socket_or_directory_at_the_token_path_is_a_typed_error(store, plant, bounded):
    """load() never blocks on what sits at the token path; it says what it is."""
    plant(store.path("k"))
    with pytest.raises(TokenStoreError, match=f"(?i)token file .* it is a {plant.kind[:4]}"):
        bounded(lambda: store.load("k"), release=[store.path("k")])


def test_fifo_socket_or_directory_at_the_lock_path_is_a_typed_error(store, plant, bounded):
    """lock() never blocks opening the lock file (lock_timeout could not bound that)."""
    plant(store.lock_path("k"))

    def take():
        with store.lock("k", 1):
            pass

    with pytest.raises(TokenStoreError, match=f"(?i)lock file .* it is a {plant.kind[:4]}"):
        bounded(take, release=[store.lock_path("k")])


def test_hard_linked_token_file_is_refused_and_the_other_file_untouched(store, tmp_path):
    """A token file with a second link is refused before any mode repair."""
    victim = tmp_path / "victim.txt"
    victim.write_text("someone's notes")
    os.chmod(victim, 0o644)
    store.save("other", TOKEN)
    os.link(victim, store.path("k"))
    with pytest.raises(TokenStoreError, match="2 hard links") as info:
        store.load("k")
    assert info.value.path == str(store.path("k"))
    assert mode(victim) == 0o644


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_directory_owned_by_another_user_is_refused_for_reading_too(store):
    """load, keys and delete refuse a token directory that belongs to someone else."""
    store.save("k", TOKEN)
    os.chown(store.directory, OTHER_UID, OTHER_UID)
    for call in (lambda: store.load("k"), store.keys, lambda: store.delete("k")):
        with pytest.raises(TokenStoreError, match="another user") as info:
            call()
        assert info.value.path == str(store.directory)
    assert store.path("k").exists()


def _temp_file(store, name: str, seconds_old: float):
    path = store.directory / f"{TEMP_PREFIX}{name}.json"
    path.write_text("refresh-secret")
    then = time.time() - seconds_old
    os.utime(path, (then, then))
    return path


def test_save_and_delete_remove_stale_temp_files_but_not_fresh_ones(store):
    """Old temp files of ours go on the next save or logout; a concurrent writer's stays."""
    store.save("k", TOKEN)
    fresh = _temp_file(store, "fresh", 1)
    old = _temp_file(store, "old", STALE_TEMP_AGE + 60)
    store.save("k", TOKEN)
    assert sorted(p.name for p in store.directory.iterdir()) == sorted(["k.json", fresh.name])
    old = _temp_file(store, "old", STALE_TEMP_AGE + 60)
    store.delete("k")
    assert not old.exists()
    assert fresh.exists()


_KILLED_MID_SAVE = """
import os, sys
from requests_tokenrotate import FileTokenStore, Token

def stuck(src, dst):  # the temp file is written and synced; the replace never comes
    print("written", flush=True)
    sys.stdin.read()

os.replace = stuck
FileTokenStore(sys.argv[1]).save("k", Token("a", refresh_token="refresh-secret"))
"""


def test_temp_file_of_a_process_killed_mid_save_is_removed_later(store, python):
    """A writer SIGKILLed between write and replace leaves a secret; a later save removes it."""
    store.save("k", TOKEN)
    child = subprocess.Popen(
        [python, "-c", _KILLED_MID_SAVE, str(store.directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "written\n"
    finally:
        child.kill()
        child.wait(10)
        child.stdin.close()
        child.stdout.close()
    (left,) = [p for p in store.directory.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert "refresh-secret" in left.read_text()
    store.save("k", TOKEN)
    assert left.exists()  # it could still be a live writer's
    then = time.time() - STALE_TEMP_AGE - 1
    os.utime(left, (then, then))
    store.save("k", TOKEN)
    assert not left.exists()
    assert store.keys() == ["k"]
