"""``tokenrotate login KEY --device|--browser`` and ``logout KEY --revoke``, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from requests_tokenrotate.testing import LocalIdP

BROWSER = Path(__file__).parent / "helpers" / "scripted_browser.py"


@pytest.fixture
def idp():
    with LocalIdP() as server:
        yield server


def tokenrotate(*args, env=None, timeout=60):
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "requests_tokenrotate", *args],
        capture_output=True, text=True, env=environment, timeout=timeout,
    )  # fmt: skip


def client_flags(idp, tmp_path):
    return ["--dir", str(tmp_path), "--issuer", idp.issuer, "--client-id", "cli"]


def stored(tmp_path, key="k"):
    path = tmp_path / f"{key}.json"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture
def browser_command(tmp_path):
    """$BROWSER names one executable: a wrapper that runs the scripted browser."""
    wrapper = tmp_path / "browser.sh"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{BROWSER}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def test_cli_login_browser_through_dollar_browser(idp, tmp_path, browser_command):
    """webbrowser runs $BROWSER; the URL is printed too; the token is stored."""
    store = tmp_path / "store"
    result = tokenrotate("login", "k", "--browser", "--scope", "read",
                         *client_flags(idp, store), env={"BROWSER": browser_command})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "refresh token: yes" in result.stdout
    assert idp.issuer + "/authorize?" in result.stderr
    assert stored(store) is not None
    assert idp.counters()["authorizations"] == 1


def test_cli_login_browser_forged_state_exits_non_zero(idp, tmp_path, browser_command):
    """A forged answer: one-line error, exit 1, nothing stored."""
    store = tmp_path / "store"
    env = {"BROWSER": browser_command, "SCRIPTED_BROWSER_STATE": "forged"}
    result = tokenrotate("login", "k", "--browser", *client_flags(idp, store), env=env)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("tokenrotate:")]
    assert len(errors) == 1
    assert "state" in errors[0]
    assert stored(store) is None


def test_cli_login_device(idp, tmp_path):
    """--device: the code is shown on stderr, the token stored once the server approves."""
    idp.device_interval = 1
    idp.auto_approve_devices = True
    result = tokenrotate("login", "k", "--device", *client_flags(idp, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "enter the code" in result.stderr
    assert "refresh token: yes" in result.stdout
    assert stored(tmp_path) is not None


def test_cli_login_device_denied(idp, tmp_path):
    """A denied device login: exit 1 with a one-line error."""
    idp.device_interval = 1
    idp.device_answer_next("access_denied")
    result = tokenrotate("login", "k", "--device", *client_flags(idp, tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("tokenrotate: error: ")
    assert "denied" in result.stderr
    assert stored(tmp_path) is None


def test_cli_logout_revoke(idp, tmp_path):
    """logout --revoke: revoked at the server, removed locally, exit 0."""
    tokens = idp.issue_tokens()
    path = tmp_path / "t.json"
    path.write_text(json.dumps(tokens))
    assert tokenrotate("login", "k", "--dir", str(tmp_path), "--file", str(path)).returncode == 0
    result = tokenrotate("logout", "k", "--revoke", *client_flags(idp, tmp_path))
    assert result.returncode == 0, result.stderr
    assert stored(tmp_path) is None
    form = {"grant_type": "refresh_token", "client_id": "cli", "refresh_token": tokens["refresh_token"]}
    with requests.post(idp.token_url, data=form, timeout=10) as refused:
        assert refused.json()["error"] == "invalid_grant"


def test_cli_logout_revoke_failure_keeps_the_token_and_says_so(idp, tmp_path):
    """Revocation fails (503): exit 1, 'may still be live', the local copy is kept."""
    path = tmp_path / "t.json"
    path.write_text(json.dumps(idp.issue_tokens()))
    assert tokenrotate("login", "k", "--dir", str(tmp_path), "--file", str(path)).returncode == 0
    idp.fail_next(3, "503", endpoint="revocation")  # every attempt (revocation is retried)
    result = tokenrotate("logout", "k", "--revoke", *client_flags(idp, tmp_path))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "may still be live" in result.stderr
    assert stored(tmp_path) is not None


def test_cli_login_device_needs_client_settings(tmp_path):
    """--device without a client: a one-line configuration error."""
    result = tokenrotate("login", "k", "--device", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert "needs client settings" in result.stderr
