"""Lazy, thread-safe, disk-cached OIDC / RFC 8414 discovery (LocalIdP; responses for shapes)."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading

import pytest
import requests
import responses

import requests_tokenrotate as rt
from requests_tokenrotate._discovery import DEFAULT_DISCOVERY_TTL, Discovery
from requests_tokenrotate._stores import HOME_ENV

ISSUER = "https://idp.example.com/tenant"
OIDC_URL = ISSUER + "/.well-known/openid-configuration"
RFC8414_URL = "https://idp.example.com/.well-known/oauth-authorization-server/tenant"
DOCUMENT = {"issuer": ISSUER, "token_endpoint": "https://idp.example.com/tenant/token"}


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "discovery"


def client_for(idp, cache, **kwargs) -> rt.OAuthClient:
    kwargs.setdefault("client_id", "cli")
    return rt.OAuthClient(issuer=idp.issuer, cache_dir=cache, timeout=(2, 2), **kwargs)


def cache_files(cache) -> list[str]:
    return sorted(os.listdir(cache)) if cache.exists() else []


# -- laziness and the disk cache --------------------------------------------------------------


def test_discovery_waits_for_the_first_token_endpoint_call(idp, cache):
    """Construction and a still-good token make no discovery request; a refresh makes one."""
    with client_for(idp, cache) as client:
        source = rt.TokenSource(rt.RefreshTokenGrant(client), rt.MemoryTokenStore(), "default")
        source.login(idp.issue_tokens())
        for _ in range(3):
            source.token()
        assert idp.discovery_calls == 0
        source.refresh(source.token())
    assert (idp.discovery_calls, idp.refresh_calls) == (1, 1)
    assert idp.token_requests[0]["grant_type"] == "refresh_token"


def test_disk_cache_serves_the_next_client_with_zero_requests(idp, cache):
    """A second client (another process, in effect) reads the cached document: no request."""
    with client_for(idp, cache) as first:
        assert first.token_endpoint() == idp.token_url
    with client_for(idp, cache) as second:
        assert second.token_endpoint() == idp.token_url
    assert idp.discovery_calls == 1
    assert len(cache_files(cache)) == 1


def test_cache_file_is_0600_in_a_0700_directory(idp, tmp_path):
    """The cache file is private, and an existing loose directory of ours is tightened."""
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)  # noqa: S103  # deliberately loose: the cache must tighten it
    with client_for(idp, loose) as client:
        client.token_endpoint()
    (name,) = cache_files(loose)
    assert stat.S_IMODE(os.stat(loose / name).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(loose).st_mode) == 0o700
    fresh = tmp_path / "a" / "b"
    with client_for(idp, fresh) as client:
        client.token_endpoint()
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700


def test_home_env_moves_the_default_cache(idp, tmp_path, monkeypatch):
    """Without cache_dir, $REQUESTS_TOKENROTATE_HOME/cache/discovery holds the cache."""
    home = tmp_path / "elsewhere"
    monkeypatch.setenv(HOME_ENV, str(home))
    with rt.OAuthClient(issuer=idp.issuer, client_id="cli") as client:
        client.token_endpoint()
    assert len(cache_files(home / "cache" / "discovery")) == 1


def test_max_age_from_the_server_is_honoured(idp, cache, clock):
    """LocalIdP says max-age=3600 (under the 1-day ttl): reused at 3599 s, fetched at 3601 s."""
    assert DEFAULT_DISCOVERY_TTL > 3600
    for advance, calls in ((0, 1), (3599, 1), (2, 2), (1, 2)):
        clock.advance(advance)
        with client_for(idp, cache, clock=clock) as client:
            client.token_endpoint()
        assert idp.discovery_calls == calls


def test_ttl_caps_the_servers_max_age_even_for_an_older_cache_file(idp, cache, clock):
    """discovery_ttl=60 beats max-age=3600, also for a file written with the longer ttl."""
    with client_for(idp, cache, clock=clock) as client:
        client.token_endpoint()
    clock.advance(61)
    with client_for(idp, cache, clock=clock, discovery_ttl=60) as client:
        client.token_endpoint()
    assert idp.discovery_calls == 2


def test_ttl_zero_keeps_the_document_off_disk(idp, cache):
    """discovery_ttl=0: nothing is written; one fetch per client (process), reused in memory."""
    for _ in range(2):
        with client_for(idp, cache, discovery_ttl=0) as client:
            client.token_endpoint()
            client.token_endpoint()
    assert idp.discovery_calls == 2
    assert cache_files(cache) == []


@pytest.mark.parametrize(
    ("cache_control", "expected_ttl"),
    [
        ("public, max-age=120", 120.0),
        ("max-age=999999999", DEFAULT_DISCOVERY_TTL),
        ("", DEFAULT_DISCOVERY_TTL),
    ],
)
@responses.activate
def test_cache_control_max_age_sets_the_cache_lifetime(cache, clock, cache_control, expected_ttl):
    """The file's lifetime is min(max-age, ttl); no header means the ttl."""
    responses.get(OIDC_URL, json=DOCUMENT, headers={"Cache-Control": cache_control})
    with rt.OAuthClient(issuer=ISSUER, client_id="cli", cache_dir=cache, clock=clock) as client:
        assert client.token_endpoint() == DOCUMENT["token_endpoint"]
    (name,) = cache_files(cache)
    saved = json.loads((cache / name).read_text())
    assert saved["expires_at"] - saved["fetched_at"] == expected_ttl
    assert saved["document"] == DOCUMENT


@pytest.mark.parametrize("cache_control", ["no-store", "no-cache", "max-age=0"])
@responses.activate
def test_uncacheable_documents_stay_in_memory_only(cache, cache_control):
    """no-store / no-cache / max-age=0: not written to disk, fetched once for the client."""
    responses.get(OIDC_URL, json=DOCUMENT, headers={"Cache-Control": cache_control})
    with rt.OAuthClient(issuer=ISSUER, client_id="cli", cache_dir=cache) as client:
        client.token_endpoint()
        client.token_endpoint()
    assert len(responses.calls) == 1
    assert cache_files(cache) == []


# -- RFC 8414 fallback ---------------------------------------------------------------------------


@responses.activate
def test_rfc8414_location_is_tried_when_the_oidc_path_is_404(cache):
    """OIDC path 404 → /.well-known/oauth-authorization-server{path} (RFC 8414 §3.1)."""
    responses.get(OIDC_URL, status=404)
    responses.get(RFC8414_URL, json=DOCUMENT)
    with rt.OAuthClient(issuer=ISSUER + "/", client_id="cli", cache_dir=cache) as client:
        assert client.token_endpoint() == DOCUMENT["token_endpoint"]
    assert [call.request.url for call in responses.calls] == [OIDC_URL, RFC8414_URL]


@responses.activate
def test_no_document_at_either_location_names_both_urls(cache):
    """Both locations 404: DiscoveryError naming both URLs; nothing cached."""
    responses.get(OIDC_URL, status=404)
    responses.get(RFC8414_URL, status=404)
    with (
        rt.OAuthClient(issuer=ISSUER, client_id="cli", cache_dir=cache) as client,
        pytest.raises(rt.DiscoveryError) as info,
    ):
        client.token_endpoint()
    assert OIDC_URL in str(info.value)
    assert RFC8414_URL in str(info.value)
    assert cache_files(cache) == []


# -- failures are never cached ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["500", "503", "html", "invalid_json", "reset"])
def test_failed_discovery_is_retried_on_the_next_call(idp, cache, mode):
    """Discovery fails once: DiscoveryError naming the URL, nothing stamped; the next call works."""
    store = rt.MemoryTokenStore()
    with client_for(idp, cache) as client:
        source = rt.TokenSource(rt.RefreshTokenGrant(client), store, "default")
        source.login(idp.issue_tokens())
        idp.fail_next(1, mode, endpoint="discovery")
        with pytest.raises(rt.DiscoveryError, match=idp.discovery_url) as info:
            source.refresh(source.token())
        assert info.value.key == "default"
        assert not isinstance(info.value, rt.TokenInvalidated)
        assert store.load("default").invalidated_at is None
        assert idp.token_calls == 0  # the refresh token was not spent
        assert cache_files(cache) == []
        assert source.refresh(source.token()).access_token
    assert (idp.discovery_calls, idp.refresh_calls) == (2, 1)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"issuer": "https://evil.example.com"}, "names issuer 'https://evil.example.com'"),
        ({"token_endpoint": "http://idp.example.com/token"}, "is not https"),
        ({"token_endpoint": None}, "token_endpoint is missing"),
        ({"token_endpoint": "/token"}, "not an absolute URL"),
        ({"jwks_uri": "http://cdn.example.com/jwks"}, "jwks_uri .* is not https"),
    ],
)
def test_unusable_documents_raise_naming_the_url_and_are_not_cached(idp, cache, overrides, match):
    """Issuer mismatch, a non-loopback http endpoint, a missing token_endpoint → DiscoveryError."""
    idp.discovery_overrides = overrides
    with client_for(idp, cache) as client:
        with pytest.raises(rt.DiscoveryError, match=match) as info:
            client.token_endpoint()
        assert idp.discovery_url in str(info.value)
        assert cache_files(cache) == []
        idp.discovery_overrides = {}
        assert client.token_endpoint() == idp.token_url
    assert idp.discovery_calls == 2


@responses.activate
def test_https_issuer_may_not_point_at_a_loopback_http_endpoint(cache):
    """Plain http is for loopback issuers only: an https issuer cannot downgrade to it."""
    responses.get(OIDC_URL, json={**DOCUMENT, "token_endpoint": "http://127.0.0.1:8080/token"})
    with (
        rt.OAuthClient(issuer=ISSUER, client_id="cli", cache_dir=cache) as client,
        pytest.raises(rt.DiscoveryError, match="is not https"),
    ):
        client.token_endpoint()


@pytest.mark.parametrize(
    "issuer",
    ["http://idp.example.com", "ftp://idp.example.com", "https://idp.example.com/?a=b", "idp"],
)
def test_bad_issuer_is_a_configuration_error_without_network(issuer):
    """A non-https (non-loopback) issuer, or one with a query, fails at construction."""
    with pytest.raises(rt.InvalidConfiguration):
        rt.OAuthClient(issuer=issuer, client_id="cli")


def test_tampered_or_corrupt_cache_is_ignored_and_replaced(idp, cache, caplog):
    """A cache naming another endpoint (re-validated on load) or garbage is refetched."""
    with client_for(idp, cache) as client:
        client.token_endpoint()
    (name,) = cache_files(cache)
    path = cache / name
    saved = json.loads(path.read_text())
    saved["document"]["token_endpoint"] = "http://attacker.example.com/token"
    for content in (json.dumps(saved), "{not json", json.dumps({**saved, "version": 99})):
        path.write_text(content)
        with caplog.at_level(logging.WARNING), client_for(idp, cache) as client:
            assert client.token_endpoint() == idp.token_url
    assert idp.discovery_calls == 4
    assert caplog.text.count("fetching again") == 3
    assert json.loads(path.read_text())["document"]["token_endpoint"] == idp.token_url


def test_symlinked_cache_file_is_not_followed(idp, cache, tmp_path):
    """A planted symlink in place of the cache file is ignored and replaced, its target untouched."""
    with client_for(idp, cache) as client:
        client.token_endpoint()
    (name,) = cache_files(cache)
    target = tmp_path / "target.json"
    target.write_text((cache / name).read_text())
    os.unlink(cache / name)
    os.symlink(target, cache / name)
    before = target.read_text()
    with client_for(idp, cache) as client:
        client.token_endpoint()
    assert idp.discovery_calls == 2
    assert not (cache / name).is_symlink()
    assert target.read_text() == before


def test_fifo_socket_or_directory_at_the_cache_path_is_a_miss_not_a_hang(
    idp, cache, plant, bounded, caplog
):
    """Whatever sits at the cache path, discovery fetches (with a WARNING) and never blocks."""
    path = Discovery(idp.issuer, cache_dir=cache).cache_path
    plant(path)
    with caplog.at_level(logging.WARNING), client_for(idp, cache) as client:
        assert bounded(client.token_endpoint, release=[path]) == idp.token_url
    assert idp.discovery_calls == 1
    assert f"discovery cache {path} is unusable (it is a {plant.kind[:4]}".lower() in (
        caplog.text.lower()
    )
    if plant.kind != "directory":  # os.replace cannot replace a directory with a file
        assert stat.S_ISREG(os.lstat(path).st_mode)


def test_hard_linked_cache_file_is_ignored_and_its_other_link_untouched(idp, cache, tmp_path):
    """A cache file with a second link is a miss; the other file keeps its content and mode."""
    with client_for(idp, cache) as client:
        client.token_endpoint()
    (name,) = cache_files(cache)
    other = tmp_path / "other.json"
    os.link(cache / name, other)
    os.chmod(other, 0o644)
    before = other.read_text()
    with client_for(idp, cache) as client:
        client.token_endpoint()
    assert idp.discovery_calls == 2
    assert (other.read_text(), stat.S_IMODE(os.stat(other).st_mode)) == (before, 0o644)
    assert os.stat(cache / name).st_nlink == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_cache_directory_of_another_user_is_not_trusted(idp, cache, caplog):
    """A cache directory that belongs to someone else is neither read nor written."""
    with client_for(idp, cache) as client:
        client.token_endpoint()
    os.chown(cache, 65534, 65534)
    with caplog.at_level(logging.WARNING), client_for(idp, cache) as client:
        assert client.token_endpoint() == idp.token_url
    assert idp.discovery_calls == 2
    assert "another user" in caplog.text


def test_moved_token_endpoint_is_rediscovered_after_a_404(idp, cache):
    """A cached endpoint that answers 404: RefreshError, the cache is dropped, the next call heals."""
    idp.discovery_overrides = {"token_endpoint": idp.url + "/moved/token"}
    with client_for(idp, cache) as client:
        client.token_endpoint()
    idp.discovery_overrides = {}
    with client_for(idp, cache) as client:
        source = rt.TokenSource(rt.RefreshTokenGrant(client), rt.MemoryTokenStore(), "default")
        source.login(idp.issue_tokens())
        with pytest.raises(rt.RefreshError, match="404"):
            source.refresh(source.token())
        assert cache_files(cache) == []
        assert source.refresh(source.token()).access_token
    assert (idp.discovery_calls, idp.refresh_calls) == (2, 1)


# -- threads ----------------------------------------------------------------------------------


class GatedSession(requests.Session):
    """Holds the first discovery GET until ``waiting`` threads are queued on the lock."""

    def __init__(self, waiting: int) -> None:
        super().__init__()
        self.waiting = waiting
        self.entered = 0
        self.changed = threading.Condition()

    def arrive(self) -> None:
        with self.changed:
            self.entered += 1
            self.changed.notify_all()

    def get(self, url, **kwargs):
        with self.changed:
            assert self.changed.wait_for(lambda: self.entered >= self.waiting, 10)
        return super().get(url, **kwargs)


class CountingLock:
    """Discovery's lock, counting the threads that reach it."""

    def __init__(self, session: GatedSession) -> None:
        self.lock = threading.Lock()
        self.session = session

    def __enter__(self):
        self.session.arrive()
        return self.lock.__enter__()

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)


def race(idp, cache, session, n):
    """``n`` threads, each with its own key, all needing the token endpoint at once."""
    client = rt.OAuthClient(
        issuer=idp.issuer,
        client_id="confidential",
        client_secret="s3cret-client",
        cache_dir=cache,
        session=session,
    )
    client._discovery._lock = CountingLock(session)  # observe the queue, no sleeps
    barrier = threading.Barrier(n)
    outcomes: list[object] = []

    def run(i: int) -> None:
        source = rt.TokenSource(
            rt.ClientCredentialsGrant(client), rt.MemoryTokenStore(), f"svc/{i}"
        )
        barrier.wait(10)
        try:
            outcomes.append(source.token().access_token)
        except rt.TokenRotateError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return client, outcomes


def test_twenty_threads_make_one_discovery_request(idp, cache):
    """20 threads needing the token endpoint together: one discovery request, 20 grants."""
    with GatedSession(20) as session:
        client, outcomes = race(idp, cache, session, 20)
    assert idp.discovery_calls == 1
    assert idp.client_credentials_calls == 20
    assert len({o for o in outcomes if isinstance(o, str)}) == 20
    assert client.token_endpoint() == idp.token_url


def test_twenty_threads_share_one_failed_discovery_and_the_next_call_retries(idp, cache):
    """Discovery fails while 20 threads wait: one request, 20 DiscoveryErrors; then it recovers."""
    idp.fail_next(1, "503", endpoint="discovery")
    with GatedSession(20) as session:
        client, outcomes = race(idp, cache, session, 20)
        assert idp.discovery_calls == 1
        assert len(outcomes) == 20
        assert all(isinstance(o, rt.DiscoveryError) for o in outcomes)
        assert client.token_endpoint() == idp.token_url
    assert idp.discovery_calls == 2
    assert idp.token_calls == 0


def test_discovery_object_repr_and_urls():
    """The document locations, and a repr without surprises."""
    discovery = Discovery("https://idp.example.com/")
    assert discovery.urls == [
        "https://idp.example.com/.well-known/openid-configuration",
        "https://idp.example.com/.well-known/oauth-authorization-server",
    ]
    assert repr(discovery) == "Discovery('https://idp.example.com')"


@pytest.mark.parametrize("ttl", [-1, True])
def test_nonsense_discovery_ttl_is_a_configuration_error(ttl):
    """A negative (or boolean) discovery_ttl fails at construction."""
    with pytest.raises(rt.InvalidConfiguration, match="discovery_ttl"):
        rt.OAuthClient(issuer="https://idp.example.com", client_id="cli", discovery_ttl=ttl)
