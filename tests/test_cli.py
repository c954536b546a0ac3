"""The command line: status, login, logout, refresh; one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

import requests_tokenrotate as rt


def cli(python, *args, stdin=None, env=None):
    return subprocess.run(
        [python, "-m", "requests_tokenrotate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_login_status_logout_round_trip(idp, tmp_path, python):
    """login seeds a key from stdin, status shows it, logout removes it."""
    response = idp.issue_tokens()
    done = cli(python, "login", "work/prod", "--dir", str(tmp_path), stdin=json.dumps(response))
    assert done.returncode == 0, done.stderr
    assert "logged in 'work/prod'" in done.stdout
    assert response["access_token"] not in done.stdout + done.stderr
    status = cli(python, "status", "--dir", str(tmp_path), "--json")
    rows = json.loads(status.stdout)["keys"]
    assert [(r["key"], r["state"], r["has_refresh_token"]) for r in rows] == [
        ("work/prod", "ok", True)
    ]
    assert 0 < rows[0]["expires_in"] <= 60
    text = cli(python, "status", "--dir", str(tmp_path)).stdout
    assert "work/prod" in text
    assert "yes" in text
    assert response["refresh_token"] not in text
    assert cli(python, "logout", "work/prod", "--dir", str(tmp_path)).returncode == 0
    assert json.loads(cli(python, "status", "--dir", str(tmp_path), "--json").stdout)["keys"] == []


def test_login_from_file_and_bad_input_is_one_line(tmp_path, python):
    """--file works; non-JSON or a body without access_token is one stderr line, exit 1."""
    good = tmp_path / "token.json"
    good.write_text(json.dumps({"access_token": "a", "expires_in": 60}))
    assert (
        cli(python, "login", "k", "--dir", str(tmp_path / "s"), "--file", str(good)).returncode == 0
    )
    for stdin in ("<html>nope</html>", '{"token_type": "Bearer"}'):
        done = cli(python, "login", "k", "--dir", str(tmp_path / "s"), stdin=stdin)
        assert done.returncode == 1
        assert done.stderr.startswith("tokenrotate: error:")
        assert len(done.stderr.strip().splitlines()) == 1
        assert "Traceback" not in done.stderr
    missing = cli(python, "login", "k", "--dir", str(tmp_path), "--file", str(tmp_path / "none"))
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr


def test_status_reports_corrupt_and_invalidated_keys(tmp_path, python):
    """A corrupt file and an invalidated key show as such; status never crashes."""
    store = rt.FileTokenStore(tmp_path)
    store.save("dead", rt.Token("a", refresh_token="r", invalidated_at=time.time()))
    store.save("broken", rt.Token("a"))
    store.path("broken").write_text("{trunc")
    rows = {
        r["key"]: r
        for r in json.loads(cli(python, "status", "--dir", str(tmp_path), "--json").stdout)["keys"]
    }
    assert rows["dead"]["state"] == "invalidated"
    assert rows["broken"]["state"] == "unreadable"
    assert str(store.path("broken")) in rows["broken"]["error"]


def test_status_never_hangs_on_a_fifo_socket_or_directory_at_a_token_path(tmp_path, python, plant):
    """status reports what sits in place of a token file, quickly, and lists the rest."""
    store = rt.FileTokenStore(tmp_path)
    store.save("good", rt.Token("a", expires_at=time.time() + 600))
    plant(store.path("odd"))
    outputs = []
    for args in (("--json",), ()):
        done = subprocess.run(
            [python, "-m", "requests_tokenrotate", "status", "--dir", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=20,  # before the fix, a FIFO blocked the open forever
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    rows = {r["key"]: r for r in json.loads(outputs[0])["keys"]}
    assert rows["good"]["state"] == "ok"
    assert rows["odd"]["state"] == "unreadable"
    assert f"it is a {plant.kind[:4]}" in rows["odd"]["error"].lower()
    assert "odd" in outputs[1]
    assert "unreadable" in outputs[1]


def test_refresh_with_flags_and_with_a_config_file(idp, tmp_path, python):
    """refresh KEY spends the refresh token once through the gate (flags or INI config)."""
    store = rt.FileTokenStore(tmp_path)
    rt.TokenSource(lambda s: s, store, "k").login(idp.issue_tokens())
    before = store.load("k")
    done = cli(
        python,
        "refresh",
        "k",
        "--dir",
        str(tmp_path),
        "--token-url",
        idp.token_url,
        "--client-id",
        "cli",
    )
    assert done.returncode == 0, done.stderr
    after = store.load("k")
    assert after.refresh_token != before.refresh_token
    config = tmp_path / "tokenrotate.ini"
    config.write_text(f"[k]\nissuer = {idp.issuer}\nclient_id = cli\n")
    env_cache = {"REQUESTS_TOKENROTATE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    done = cli(
        python, "refresh", "k", "--dir", str(tmp_path), "--config", str(config), env=env_cache
    )
    assert done.returncode == 0, done.stderr
    assert store.load("k").refresh_token != after.refresh_token
    assert idp.refresh_calls == 2
    assert idp.invalid_grant == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["refresh", "k"], "client settings"),
        (
            ["refresh", "nobody", "--token-url", "http://127.0.0.1:9/token", "--client-id", "cli"],
            "no token stored",
        ),
    ],
)
def test_refresh_errors_are_one_line(tmp_path, python, args, message):
    """Missing settings or an unknown key: one line on stderr, exit 1, no traceback."""
    done = cli(python, *args, "--dir", str(tmp_path))
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_revoked_refresh_token_says_log_in_again(idp, tmp_path, python):
    """A rejected refresh token is reported (and stamped) without a traceback."""
    store = rt.FileTokenStore(tmp_path)
    response = idp.issue_tokens()
    rt.TokenSource(lambda s: s, store, "k").login(response)
    idp.revoke(response["refresh_token"])
    done = cli(
        python,
        "refresh",
        "k",
        "--dir",
        str(tmp_path),
        "--token-url",
        idp.token_url,
        "--client-id",
        "cli",
    )
    assert done.returncode == 1
    assert "log in again" in done.stderr
    assert store.load("k").invalidated_at is not None


def test_verbose_logs_are_secret_free(idp, tmp_path, python):
    """--verbose turns on DEBUG lines on stderr without any token in them."""
    store = rt.FileTokenStore(tmp_path)
    response = idp.issue_tokens()
    rt.TokenSource(lambda s: s, store, "k").login(response)
    done = cli(
        python,
        "-v",
        "refresh",
        "k",
        "--dir",
        str(tmp_path),
        "--token-url",
        idp.token_url,
        "--client-id",
        "cli",
    )
    assert done.returncode == 0
    assert "DEBUG" in done.stderr
    new = store.load("k")
    for secret in (
        response["access_token"],
        response["refresh_token"],
        new.access_token,
        new.refresh_token,
    ):
        assert secret not in done.stderr + done.stdout
