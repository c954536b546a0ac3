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
    assert len(done.stderr.splitlines()) == 1, done.stderr  # no WARNING line besides it
    assert store.load("k").invalidated_at is not None


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_logs_are_secret_free(idp, tmp_path, python, where):
    """--verbose (before or after the command) turns on DEBUG lines without any token."""
    store = rt.FileTokenStore(tmp_path)
    response = idp.issue_tokens()
    rt.TokenSource(lambda s: s, store, "k").login(response)
    args = ["refresh", "k", "--dir", str(tmp_path), "--token-url", idp.token_url]
    args += ["--client-id", "cli"]
    done = cli(python, *(["-v", *args] if where == "before" else [*args, "-v"]))
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


def test_corrupt_file_hint_names_the_key_and_the_directory(idp, tmp_path, python):
    """A corrupt token file: one line naming the real key and --dir; that command works."""
    store = rt.FileTokenStore(tmp_path)
    store.save("work/prod", rt.Token("a", refresh_token="r"))
    store.path("work/prod").write_text("{trunc")
    args = ["--dir", str(tmp_path), "--token-url", idp.token_url, "--client-id", "cli"]
    done = cli(python, "refresh", "work/prod", *args)
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1, done.stderr
    hint = f"tokenrotate logout work/prod --dir {tmp_path}"
    assert hint in done.stderr
    assert "KEY" not in done.stderr
    status = json.loads(cli(python, "status", "--dir", str(tmp_path), "--json").stdout)
    assert hint in status["keys"][0]["error"]
    assert cli(python, *hint.split()[1:]).returncode == 0
    assert store.keys() == []


def test_config_file_without_the_keys_section_names_it(tmp_path, python):
    """A config file with no [KEY] section says which section is missing."""
    config = tmp_path / "tokenrotate.ini"
    config.write_text("[other]\nclient_id = cli\ntoken_url = http://127.0.0.1:9/token\n")
    done = cli(python, "refresh", "work", "--dir", str(tmp_path), "--config", str(config))
    assert done.returncode == 1
    assert "no [work] section" in done.stderr
    assert "[other]" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_refresh_discovery_failure_does_not_promise_a_next_call(tmp_path, python):
    """A one-shot refresh whose discovery fails does not say it will retry on a next call."""
    store = rt.FileTokenStore(tmp_path / "s")
    rt.TokenSource(lambda s: s, store, "k").login(rt.Token("a", refresh_token="r"))
    env = {"REQUESTS_TOKENROTATE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    done = cli(
        python,
        "refresh",
        "k",
        "--dir",
        str(tmp_path / "s"),
        "--issuer",
        "http://127.0.0.1:9",
        "--client-id",
        "cli",
        env=env,
    )
    assert done.returncode == 1
    assert "discovery" in done.stderr
    assert "next call" not in done.stderr
    assert len(done.stderr.splitlines()) == 1


#: Installed by the test extra only; the demo must not need any of them.
TEST_ONLY = ("pytest", "responses", "requests_toolbelt", "cryptography", "mypy", "django", "hvac")

BLOCKER = f"""
import sys

class _Blocker:
    blocked = {TEST_ONLY!r}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"{{name}} is blocked: not a core dependency", name=name)
        return None

sys.meta_path.insert(0, _Blocker())
"""


def test_demo_needs_only_the_core_dependencies(tmp_path, python):
    """`python -m requests_tokenrotate demo` runs with every test-only package unimportable."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)  # also loaded by the worker processes
    env = {
        "PYTHONPATH": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "REQUESTS_TOKENROTATE_HOME": str(tmp_path / "home"),
    }
    probe = subprocess.run(
        [python, "-c", "import pytest"], capture_output=True, text=True, env=env, timeout=60
    )
    assert "blocked" in probe.stderr  # the blocker is really in place
    done = subprocess.run(
        [python, "-m", "requests_tokenrotate", "demo", "-p", "2", "-t", "2", "-d", "1", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "all invariants held" in done.stdout
    assert "blocked" not in done.stderr
