"""RedisTokenStore on a real redis-server: lease, compare-and-set, outages, secrets, CLI."""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import pickle
import signal
import time

import pytest
import requests
from helpers.redis_server import RedisServer

import requests_tokenrotate as rt
from requests_tokenrotate import _cli
from requests_tokenrotate._storespec import store_from_spec
from requests_tokenrotate.testing import LocalIdP

TOKEN = rt.Token("access-secret", refresh_token="refresh-secret", expires_at=2e9, obtained_at=1e9)
PASSWORD = "pa55-w0rd-s3cret"


def until(condition, timeout: float = 10.0) -> None:
    """Poll a state check, bounded."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_save_load_keys_and_the_shared_codec(redis_url):
    """Values are the shared versioned codec with a generation that counts saves."""
    store = rt.RedisTokenStore(redis_url)
    assert isinstance(store, rt.TokenStore)
    store.save("a/b", TOKEN)
    store.save("a/b", TOKEN)
    raw = json.loads(store._client.get(store.token_key("a/b")))
    assert raw["version"] == 1
    assert raw["key"] == "a/b"
    assert raw["generation"] == 2
    assert store.load("a/b") == TOKEN
    assert store.load("missing") is None
    store.delete("a/b")
    assert store.load("a/b") is None
    assert store.keys() == []


def test_keys_scans_thousands_and_respects_the_prefix(redis_url):
    """keys() pages through SCAN; another prefix (even one with glob characters) is separate."""
    store = rt.RedisTokenStore(redis_url, prefix="t[1]*:")
    other = rt.RedisTokenStore(redis_url, prefix="t1:")
    document = b'{"version":1,"generation":1,"token":{"access_token":"x"}}'
    with store._client.pipeline(transaction=False) as pipe:
        for n in range(2500):
            pipe.set(store.token_key(f"tenant-{n}"), document)
        pipe.execute()
    other.save("lone", TOKEN)
    keys = store.keys()
    assert len(keys) == 2500
    assert keys[0] == "tenant-0"
    assert other.keys() == ["lone"]


def test_lock_is_exclusive_and_times_out(redis_url):
    store = rt.RedisTokenStore(redis_url)
    with store.lock("k", 1) as held:
        assert 0 < held.remaining() <= store.lease
        with pytest.raises(rt.LockTimeout), store.lock("k", 0.2):
            pass
    with store.lock("k", 0.2):
        pass


def test_a_lost_lease_refuses_the_save_and_spares_the_new_holder(redis_url, caplog):
    """A holder past its lease: remaining() 0, save -> LockLost, its release frees nothing."""
    store = rt.RedisTokenStore(redis_url, lease=0.3)
    store.save("k", TOKEN)
    newer = TOKEN.replace(access_token="newer")
    with caplog.at_level(logging.WARNING), store.lock("k", 1) as late:
        late.load()
        until(lambda: not store._client.exists(store.lock_key("k")))
        assert late.remaining() == 0.0
        with store.lock("k", 1) as current:
            current.load()
            current.save(newer)
            with pytest.raises(rt.LockLost, match="lease expired"):
                late.save(TOKEN.replace(access_token="stale"))
            with pytest.raises(rt.LockLost):
                late.delete()
            late_exit = store.lock("k", 0.1)  # the late holder's lock is not current's
            with pytest.raises(rt.LockTimeout), late_exit:
                pass
    assert "expired before its release" in caplog.text
    assert store.load("k").access_token == "newer"


def test_a_generation_moved_on_under_the_lock_refuses_the_save(redis_url):
    """An unlocked (tool) save between load and save makes the holder's save a LockLost."""
    store = rt.RedisTokenStore(redis_url)
    store.save("k", TOKEN)
    with store.lock("k", 1) as held:
        held.load()
        store.save("k", TOKEN.replace(access_token="tool"))
        with pytest.raises(rt.LockLost, match="changed since it was read"):
            held.save(TOKEN.replace(access_token="mine"))
        held.load()  # read again: now the save may go ahead
        held.save(TOKEN.replace(access_token="mine"))
        held.save(TOKEN.replace(access_token="again"))  # its own save is the new expectation
    assert store.load("k").access_token == "again"


def test_redis_down_is_a_typed_error_within_the_timeout_then_recovers(tmp_path):
    """Refused, paused (SIGSTOP: a slow Redis) and restarted: TokenStoreError, bounded; then OK."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        store = rt.RedisTokenStore(server.url, timeout=1.0)
        store.save("k", TOKEN)
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            for action in (lambda: store.load("k"), lambda: store.lock("k", 5).__enter__()):
                started = time.monotonic()
                with pytest.raises(rt.TokenStoreError, match="TimeoutError"):
                    action()
                assert time.monotonic() - started < 3 * store.timeout  # not redis-py's 5 s x 3
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert store.load("k") == TOKEN
        server.stop()
        with pytest.raises(rt.TokenStoreError, match="could not read"):
            store.load("k")
        with pytest.raises(rt.TokenStoreError), store.lock("k", 5):
            pass
        server.start()
        assert store.load("k") == TOKEN  # the next call after Redis is back works (AOF)
        with store.lock("k", 1) as held:
            assert held.load() == TOKEN
    finally:
        server.stop()


def test_wait_replicas_reports_an_unreplicated_save(redis_url):
    """wait_replicas=1 on a server with no replica: TokenStoreError, within the timeout."""
    store = rt.RedisTokenStore(redis_url, wait_replicas=1, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(rt.TokenStoreError, match="0 of 1 replicas"):
        store.save("k", TOKEN)
    assert time.monotonic() - started < 3 * store.timeout


def _certificate(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_rediss_with_a_password_works_and_the_password_never_shows(tmp_path, caplog):
    """TLS + AUTH: works; the password is in no repr, log line or error (wrong one included)."""
    cert, key = _certificate(tmp_path / "tls")
    server = RedisServer(tmp_path / "redis", "--requirepass", PASSWORD, tls=(cert, key)).start()
    host = server.url.split("://", 1)[1]
    url = f"rediss://:{PASSWORD}@{host}?ssl_ca_certs={cert}"
    texts = []
    try:
        with caplog.at_level(logging.DEBUG):
            store = rt.RedisTokenStore(url)
            store.save("k", TOKEN)
            with store.lock("k", 1) as held:
                assert held.load() == TOKEN
            texts += [repr(store), store_from_spec(url).__repr__()]
            for wrong in (
                f"rediss://:not-{PASSWORD}@{host}?ssl_ca_certs={cert}",
                f"redis://:{PASSWORD}@{host}",  # plain text against a TLS port
                f"rediss://{host}?password={PASSWORD}x&ssl_ca_certs={cert}",
            ):
                bad = rt.RedisTokenStore(wrong, timeout=1.0)
                texts.append(repr(bad))
                with pytest.raises(rt.TokenStoreError) as info:
                    bad.load("k")
                texts += [str(info.value), repr(info.value), str(info.value.path)]
            source = rt.TokenSource(lambda stale: TOKEN, store, "k")
            texts.append(repr(source))
    finally:
        server.stop()
    logged = "\n".join(r.getMessage() for r in caplog.records) + "\n".join(texts)
    assert "rediss://:***@127.0.0.1" in logged
    assert PASSWORD not in logged


def test_pickles_by_url(redis_url):
    store = rt.RedisTokenStore(redis_url, prefix="p:", lease=40)
    store.save("k", TOKEN)
    copy = pickle.loads(pickle.dumps(store))
    assert (copy.prefix, copy.lease) == ("p:", 40)
    assert copy.load("k") == TOKEN


def test_bad_arguments_are_configuration_errors():
    for kwargs in ({}, {"lease": 0}, {"timeout": -1}, {"wait_replicas": -1}):
        with pytest.raises(rt.InvalidConfiguration):
            rt.RedisTokenStore(**({"url": "redis://127.0.0.1:1"} if kwargs else {}), **kwargs)
    with pytest.raises(rt.InvalidConfiguration, match="unknown scheme"):
        store_from_spec("mongodb://x")
    with pytest.raises(rt.InvalidConfiguration, match=r"redis://u:\*\*\*@"):
        rt.RedisTokenStore("redis://u:hunter2@127.0.0.1:notaport/0")


def test_hot_path_sends_no_redis_command(redis_url, idp):
    """A fresh token in memory: 100 requests, 0 Redis commands."""
    store = rt.RedisTokenStore(redis_url)
    client = rt.OAuthClient(token_url=idp.token_url, client_id="cli")
    source = rt.TokenSource(rt.RefreshTokenGrant(client), store, "default")
    source.login(idp.issue_tokens())
    session = requests.Session()
    rt.mount(session, idp.resource_url, source)
    assert session.get(idp.resource_url, timeout=10).status_code == 200

    def commands() -> int:
        stats = store._client.info("commandstats")
        return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")

    before = commands()
    for _ in range(100):
        assert session.get(idp.resource_url, timeout=10).status_code == 200
    assert commands() == before


def test_cli_takes_a_redis_store(redis_url, tmp_path, capsys):
    """--store redis://... on login, status and logout."""
    response = tmp_path / "token.json"
    response.write_text(json.dumps({"access_token": "a", "refresh_token": "r", "expires_in": 60}))
    assert _cli.main(["login", "team/api", "--store", redis_url, "--file", str(response)]) == 0
    assert _cli.main(["status", "--store", redis_url, "--json"]) == 0
    out = capsys.readouterr().out
    status = json.loads(out[out.index("{") :])
    assert [row["key"] for row in status["keys"]] == ["team/api"]
    assert status["keys"][0]["state"] == "ok"
    assert _cli.main(["logout", "team/api", "--store", redis_url]) == 0
    assert rt.RedisTokenStore(redis_url).keys() == []
    assert _cli.main(["status", "--store", "redis://127.0.0.1:1/0"]) == 1
    assert "could not list the keys" in capsys.readouterr().err


def test_redis_restart_mid_run_only_typed_errors_and_the_credential_survives(
    redis_server, fleet
):
    """Redis stopped and restarted (AOF) under a running fleet: typed errors, 0 invalid_grant."""
    with redis_server.client() as client:
        client.flushall()
    url = redis_server.url
    with LocalIdP(access_token_lifetime=1.0) as idp:
        store = rt.RedisTokenStore(url, lease=30)
        token = rt.Token.from_response(idp.issue_tokens())
        store.save("default", token.replace(expires_at=time.time() - 1))
        idp.reset_counters()
        options = {"resource": idp.resource_url, "lock_timeout": 3, "redis_timeout": 1.0}
        options["deadline"] = 2.0  # below lock_timeout, as TokenSource demands
        workers = fleet(url, idp.token_url, **options)
        children = workers.start(hosts=2, processes=1, threads=2, duration=9, interval=0.1)
        until(lambda: idp.refresh_calls >= 2, 10)  # refreshes before the outage
        # Hold the key's lock so nothing refreshes across the restart: what was stored
        # before must be what is stored after.
        with store.lock("default", 10) as held:
            before = held.load()
            redis_server.stop()
            time.sleep(3)  # the outage's length, not a synchronisation
            redis_server.start()
            after = held.load()
            assert held.remaining() > 0  # the lease itself survived (AOF)
        results = workers.gather(children)
        counters = idp.counters()
    assert after.is_same(before)
    assert after.refresh_token == before.refresh_token
    errors = {r["error"] for r in results if "error" in r}
    assert errors
    assert errors <= {"TokenStoreError", "LockTimeout", "LockLost"}
    assert {r.get("status") for r in results if "error" not in r} == {200}
    assert counters["invalid_grant"] == 0
    last = max(results, key=lambda r: r["start"])
    assert last.get("status") == 200  # the fleet works again after the restart
