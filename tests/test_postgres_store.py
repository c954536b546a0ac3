"""PostgresTokenStore on a real PostgreSQL cluster (the session's ``postgres_server``)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
import time

import psycopg
import pytest
from psycopg import sql

import requests_tokenrotate as rt
from requests_tokenrotate import _cli
from requests_tokenrotate.testing import LocalIdP

APP_PASSWORD = "pg-S3cret#pa55/w@rd"  # tests/helpers/pg_server.py


def token(name: str = "a", *, expires_in: float = 3600) -> rt.Token:
    now = time.time()
    return rt.Token(name, refresh_token="r-" + name, expires_at=now + expires_in, obtained_at=now)


def generation(server, store, key):
    query = sql.SQL("SELECT generation FROM {} WHERE key = %s").format(sql.Identifier(store.table))
    rows = server.admin(query, (key,))
    return rows[0][0] if rows else None


def holder_pid(server, store, key) -> int:
    """The backend that holds ``key``'s advisory lock (what an administrator would look up)."""
    rows = server.admin(
        "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.classid::int = hashtext(%s) AND l.objid::int = hashtext(%s)",
        (store.table, key),
    )
    assert len(rows) == 1, rows
    return rows[0][0]


def test_lock_load_save_compare_and_set(pg_store, postgres_server):
    """Saves under the lock bump the generation; the document and the row agree."""
    with pg_store.lock("k", 5) as held:
        assert held.load() is None
        held.save(token("a"))
        held.save(token("b"))  # after the first commit the lock is taken again
    assert pg_store.load("k").access_token == "b"
    assert generation(postgres_server, pg_store, "k") == 2
    pg_store.save("k", token("c"))  # a tool's unlocked upsert
    query = sql.SQL("SELECT generation, document->>'generation' FROM {}")
    rows = postgres_server.admin(query.format(sql.Identifier(pg_store.table)))
    assert rows == [(3, "3")]
    assert pg_store.keys() == ["k"]


def test_a_save_after_the_key_moved_on_is_lost_and_writes_nothing(pg_store, postgres_server):
    """A holder whose read is stale gets LockLost; the newer token stays."""
    pg_store.save("k", token("old"))
    with pg_store.lock("k", 5) as held:
        held.load()
        pg_store.save("k", token("newer"))  # a tool wrote meanwhile
        with pytest.raises(rt.LockLost, match="changed since it was read"):
            held.save(token("mine"))
    assert pg_store.load("k").access_token == "newer"


def test_first_save_of_a_new_key_loses_to_a_concurrent_insert(pg_store):
    """A key that was absent when read is inserted only if it is still absent."""
    with pg_store.lock("k", 5) as held:
        assert held.load() is None
        pg_store.save("k", token("other"))
        with pytest.raises(rt.LockLost):
            held.save(token("mine"))
    assert pg_store.load("k").access_token == "other"


def test_the_lock_is_exclusive_and_a_busy_lock_times_out_typed(pg_store):
    """lock_timeout maps to LockTimeout; the holder keeps its lock."""
    held_event, release = threading.Event(), threading.Event()

    def hold():
        with pg_store.lock("k", 5):
            held_event.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held_event.wait(10)
        with pytest.raises(rt.LockTimeout, match="stayed busy"), pg_store.lock("k", 0.2):
            pass
        with pg_store.lock("other-key", 1):  # other keys are not blocked
            pass
    finally:
        release.set()
        thread.join(10)
    with pg_store.lock("k", 1):
        pass


def test_logout_under_the_lock_deletes_with_compare_and_set(pg_store):
    """delete() under the lock removes the row it read."""
    source = rt.TokenSource(lambda stale: token("x"), pg_store, "k")
    source.login(token("a"))
    source.logout()
    assert pg_store.load("k") is None
    assert pg_store.keys() == []


def make_source(idp, store, key="k"):
    client = rt.OAuthClient(token_url=idp.token_url, client_id="cli", timeout=(2, 2), deadline=4)
    return rt.TokenSource(rt.RefreshTokenGrant(client), store, key, lock_timeout=5)


def login_expired(idp, source):
    source.login(rt.Token.from_response(idp.issue_tokens()).replace(expires_at=time.time() - 1))
    idp.reset_counters()


class TerminatedAfterLoad:
    """A store whose held lock's session an administrator ends right after the gate's read."""

    def __init__(self, inner, server):
        self.inner = inner
        self.server = server

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @contextlib.contextmanager
    def lock(self, key, timeout):
        inner, server = self.inner, self.server

        class Held:
            def __init__(self, held):
                self.held = held

            def load(self):
                value = self.held.load()
                pid = holder_pid(server, inner, key)
                server.admin("SELECT pg_terminate_backend(%s)", (pid,))
                return value

            def remaining(self):
                return self.held.remaining()

            def save(self, tok):
                self.held.save(tok)

            def delete(self):
                self.held.delete()

        with inner.lock(key, timeout) as held:
            yield Held(held)


def test_terminated_session_before_the_token_call_makes_no_call(pg_store, postgres_server, idp):
    """pg_terminate_backend on the holder: the gate's check notices; no call, nothing written."""
    source = make_source(idp, pg_store)
    login_expired(idp, source)
    before = pg_store.load("k")
    gen = generation(postgres_server, pg_store, "k")
    source.store = source._gate.store = TerminatedAfterLoad(pg_store, postgres_server)
    with pytest.raises(rt.LockLost, match="not calling the token endpoint"):
        source.token()
    assert idp.token_calls == 0
    assert pg_store.load("k").is_same(before)
    assert generation(postgres_server, pg_store, "k") == gen
    source.store = source._gate.store = pg_store
    assert source.token().access_token != before.access_token  # the next call works
    assert idp.refresh_calls == 1
    assert idp.invalid_grant == 0


def test_a_save_on_a_terminated_session_is_typed_and_never_reconnects(pg_store, postgres_server):
    """The session ends between read and save: TokenStoreError, the row untouched."""
    pg_store.save("k", token("old"))
    with pg_store.lock("k", 5) as held:
        held.load()
        postgres_server.admin(
            "SELECT pg_terminate_backend(%s)", (holder_pid(postgres_server, pg_store, "k"),)
        )
        assert held.remaining() == 0.0
        with pytest.raises(rt.TokenStoreError, match="ended") as caught:
            held.save(token("mine"))
        assert APP_PASSWORD not in str(caught.value)
    assert pg_store.load("k").access_token == "old"
    assert generation(postgres_server, pg_store, "k") == 1


def test_the_lock_dies_with_its_session(pg_store, postgres_server):
    """A terminated holder's lock is free at once for the next process."""
    with pg_store.lock("k", 5):
        postgres_server.admin(
            "SELECT pg_terminate_backend(%s)", (holder_pid(postgres_server, pg_store, "k"),)
        )
        with pg_store.lock("k", 5) as second:
            assert second.remaining() > 30


def test_database_down_fails_closed_and_recovers(pg_store, postgres_server, idp, caplog):
    """Server stopped: typed errors and no token call; restarted: the next call works."""
    source = make_source(idp, pg_store)
    login_expired(idp, source)
    before = pg_store.load("k")
    postgres_server.stop()
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(2):
                with pytest.raises(rt.TokenStoreError) as caught:
                    source.token()
                assert APP_PASSWORD not in str(caught.value)
                assert "127.0.0.1" in str(caught.value)
        assert idp.token_calls == 0
    finally:
        postgres_server.start()
    assert APP_PASSWORD not in caplog.text
    assert pg_store.load("k").is_same(before)
    assert source.token().access_token != before.access_token
    assert idp.refresh_calls == 1
    assert idp.invalid_grant == 0


def test_the_password_never_appears_in_reprs_errors_or_logs(postgres_server, caplog):
    """A wrong password, a down server, a malformed DSN: no secret anywhere we print."""
    wrong = postgres_server.dsn().replace("pg-S3cret", "wrong-S3cret")
    store = rt.PostgresTokenStore(wrong, table="never_created")
    assert "S3cret" not in repr(store)
    with caplog.at_level(logging.DEBUG), pytest.raises(rt.TokenStoreError) as caught:
        store.load("k")
    assert "password authentication failed" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), str(caught.value.__dict__), caplog.text):
        assert "S3cret" not in text
    assert caught.value.__cause__ is None  # psycopg's error (and its text) is not chained
    with pytest.raises(rt.InvalidConfiguration) as bad:
        rt.PostgresTokenStore("host=x password=S3cret-unterminated 'quote")
    assert "S3cret" not in str(bad.value)


def test_create_table_false_needs_the_documented_ddl(postgres_server):
    """Without create_table the app runs no DDL; the DDL quotes odd names as identifiers."""
    table = 'odd "name"; drop'
    store = rt.PostgresTokenStore(postgres_server.dsn(), table=table, create_table=False)
    with pytest.raises(rt.TokenStoreError, match="does not exist"):
        store.load("k")
    ddl = rt.PostgresTokenStore.ddl(table)
    assert '"odd ""name""; drop"' in ddl
    postgres_server.admin(ddl)
    postgres_server.admin('GRANT ALL ON "odd ""name""; drop" TO app')
    try:
        store.save("k", token("a"))
        assert store.load("k").access_token == "a"
    finally:
        postgres_server.admin('DROP TABLE "odd ""name""; drop"')


class Counting(psycopg.Connection):
    """A psycopg connection that counts the statements we send (for the zero-query hot path)."""

    statements = 0
    connections = 0

    def execute(self, *args, **kwargs):
        Counting.statements += 1
        return super().execute(*args, **kwargs)


def test_hot_path_makes_no_queries_and_holds_no_connection(postgres_server, idp):
    """While the token is fresh: 0 connections, 0 statements; a refresh uses a few."""

    def connect():
        Counting.connections += 1
        return Counting.connect(postgres_server.dsn(), autocommit=True)

    store = rt.PostgresTokenStore(connection=connect, table="t_hot_path")
    try:
        source = make_source(idp, store)
        login_expired(idp, source)
        source.token()
        Counting.statements = Counting.connections = 0
        for _ in range(1000):
            source.token()
        assert (Counting.statements, Counting.connections) == (0, 0)
        active = postgres_server.admin(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'"
        )
        assert active == [(0,)]
    finally:
        postgres_server.admin('DROP TABLE IF EXISTS "t_hot_path"')


def run_cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = _cli.main(list(args))
    return code, out.getvalue()


def test_cli_login_status_logout_with_store_url(postgres_server, tmp_path):
    """--store postgresql://... on login, status and logout."""
    dsn = postgres_server.dsn()
    response = tmp_path / "token.json"
    response.write_text(json.dumps({"access_token": "x", "refresh_token": "y", "expires_in": 60}))
    assert run_cli("login", "cli-key", "--store", dsn, "--file", str(response))[0] == 0
    code, out = run_cli("status", "--store", dsn, "--json")
    assert code == 0
    data = json.loads(out)
    assert APP_PASSWORD not in out
    assert [row["state"] for row in data["keys"] if row["key"] == "cli-key"] == ["ok"]
    assert run_cli("logout", "cli-key", "--store", dsn)[0] == 0
    assert "cli-key" not in run_cli("status", "--store", dsn)[1]


def test_status_lists_ten_thousand_keys(postgres_server):
    """10,000 tenants in one table (loaded with COPY): status lists every one in one query."""
    store = rt.PostgresTokenStore(postgres_server.dsn(), table="t_tenants")
    store.create_table()
    from requests_tokenrotate import _codec

    try:
        with psycopg.connect(postgres_server.dsn()) as conn, conn.cursor() as cursor:
            copy_sql = 'COPY "t_tenants" (key, document, generation) FROM STDIN'
            with cursor.copy(copy_sql) as copy:
                for n in range(10_000):
                    key = f"tenant-{n:05d}"
                    copy.write_row((key, _codec.encode(key, token(key), 1).decode(), 1))
        started = time.monotonic()
        code, out = run_cli(
            "status", "--store", postgres_server.dsn() + "?table=t_tenants", "--json"
        )
        elapsed = time.monotonic() - started
        assert code == 0, out
        rows = json.loads(out)["keys"]
        assert len(rows) == 10_000
        assert {row["state"] for row in rows} == {"ok"}
        print(f"status listed 10,000 keys in {elapsed:.2f} s")
    finally:
        postgres_server.admin('DROP TABLE IF EXISTS "t_tenants"')


def test_restart_mid_run_only_typed_errors_and_the_credential_survives(postgres_server, fleet):
    """PostgreSQL restarted under a running fleet: typed errors only, 0 invalid_grant after."""
    key = "restart-mid-run"
    store = rt.PostgresTokenStore(postgres_server.dsn())
    with LocalIdP(access_token_lifetime=2) as idp:
        source = make_source(idp, store, key)
        login_expired(idp, source)
        options = {"key": key, "lock_timeout": 20, "deadline": 15, "interval": 0.02}
        workers = fleet(postgres_server.dsn(), idp.token_url, **options)
        children = workers.start(hosts=2, processes=2, threads=2, duration=8)
        time.sleep(2.5)  # let the fleet refresh on a live database first
        postgres_server.stop()
        time.sleep(2.5)  # an outage longer than a token's lifetime
        postgres_server.start()
        results = [workers.collect(child) for child in children]
        errors = {r["error"] for outcomes in results for r in outcomes if "error" in r}
        assert errors <= {"TokenStoreError", "LockTimeout"}, errors
        # Every process got a token at least once.
        assert all(any("token" in r for r in outcomes) for outcomes in results)
        assert idp.invalid_grant == 0
        stored = store.load(key)
        assert source.refresh(stored).access_token != stored.access_token  # still live
        assert idp.invalid_grant == 0
