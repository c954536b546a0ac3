"""TokenRotateAdapter and mount(): what is specific to the adapter.

The behaviour it shares with TokenRotateAuth is tested for both in test_transport.py.
"""

from __future__ import annotations

import pickle
import re
import time

import pytest
import requests
import responses
from requests.adapters import HTTPAdapter

import requests_tokenrotate as rt

API = "https://api.example.com"


@pytest.fixture
def source():
    """A logged-in source whose grant mints tok-2, tok-3, ... without any network."""
    minted = iter(range(2, 1000))

    def grant(stale):
        return rt.Token(f"tok-{next(minted)}", expires_at=time.time() + 3600)

    source = rt.TokenSource(grant, rt.MemoryTokenStore(), key="fake")
    source.login(rt.Token("tok-1", expires_at=time.time() + 3600, obtained_at=time.time()))
    return source


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, re.compile(r".*"), callback=lambda r: (200, {}, "{}"))
        yield mock


@pytest.fixture
def session():
    with requests.Session() as session:
        yield session


def sent_authorization(mocked, index=0):
    return mocked.calls[index].request.headers.get("Authorization")


def test_mount_mounts_an_adapter_for_the_prefix_origin(session, source, mocked):
    """mount() returns the adapter mounted at the prefix, allowed for the prefix's origin only."""
    adapter = rt.mount(session, f"{API}/v1/", source)
    assert isinstance(adapter, rt.TokenRotateAdapter)
    assert isinstance(adapter, HTTPAdapter)
    assert session.get_adapter(f"{API}/v1/things") is adapter
    assert adapter.source is source
    session.get(f"{API}/v1/things")
    assert sent_authorization(mocked) == "Bearer tok-1"


def test_mount_with_explicit_origins_uses_them(session, source, mocked):
    """origins= passed to mount() wins over the prefix's origin."""
    rt.mount(session, "https://", source, origins=[API])
    session.get("https://other.example.com/")
    session.get(f"{API}/")
    assert sent_authorization(mocked, 0) is None
    assert sent_authorization(mocked, 1) == "Bearer tok-1"


def test_mount_rejects_a_prefix_without_a_host(session, source):
    """A prefix that is not an absolute http(s) URL is a configuration error."""
    with pytest.raises(rt.InvalidConfiguration):
        rt.mount(session, "api.example.com/", source)


@pytest.mark.parametrize("origins", [None, [], ()])
def test_adapter_without_origins_is_refused(source, origins):
    """No origins: a clear configuration error that says what to pass, not a first-request pin."""
    kwargs = {} if origins is None else {"origins": origins}
    with pytest.raises(rt.InvalidConfiguration, match=r"origins") as caught:
        rt.TokenRotateAdapter(source, **kwargs)
    if origins is None:
        assert "rt.mount" in str(caught.value)


@pytest.mark.parametrize(
    "first", ["https://api.example.com.evil.net/steal", "https://api.example.com:4431/steal"]
)
def test_look_alike_first_request_never_gets_the_token(session, source, mocked, first):
    """A look-alike that matches the mount prefix as a string, sent first, gets no token."""
    rt.mount(session, API, source)
    session.get(first)
    session.get(f"{API}/mine")
    assert [sent_authorization(mocked, i) for i in range(2)] == [None, "Bearer tok-1"]


def test_mount_with_a_port_prefix_refuses_a_longer_port(session, source, mocked):
    """Prefix ':4433' also string-matches ':44331'; only port 4433 gets the token."""
    rt.mount(session, "https://api.example.com:4433", source)
    session.get("https://api.example.com:44331/x")
    session.get("https://api.example.com:4433/x")
    assert [sent_authorization(mocked, i) for i in range(2)] == [None, "Bearer tok-1"]


def test_misspelt_option_is_a_type_error(source):
    """An unknown keyword fails at construction, as any misspelt keyword does."""
    with pytest.raises(TypeError, match="refresh_onn"):
        rt.TokenRotateAdapter(source, origins=API, refresh_onn=401)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="refresh_onn"), requests.Session() as session:
        rt.mount(session, API, source, refresh_onn=401)  # type: ignore[call-arg]


def test_foreign_request_carrying_our_header_is_stripped(source, mocked):
    """A hop to another origin that copied our header goes out without it."""
    adapter = rt.TokenRotateAdapter(source, origins=[API])
    with requests.Session() as session:
        session.mount("https://", adapter)
        session.get(f"{API}/")
        prepared = requests.Request(
            "GET", "https://evil.net/", headers={"Authorization": "Bearer tok-1"}
        ).prepare()
        session.send(prepared)
        mine = requests.Request(
            "GET", "https://evil.net/", headers={"Authorization": "Basic dXNlcjpwYXNz"}
        ).prepare()
        session.send(mine)
    assert sent_authorization(mocked, 1) is None
    assert sent_authorization(mocked, 2) == "Basic dXNlcjpwYXNz"  # not ours: left alone


def test_http_adapter_arguments_are_accepted(source):
    """Pool sizes, pool_block and max_retries go to HTTPAdapter."""
    adapter = rt.TokenRotateAdapter(
        source, origins=API, pool_connections=3, pool_maxsize=7, pool_block=True, max_retries=2
    )
    assert adapter.max_retries.total == 2
    assert adapter._pool_connections == 3
    assert adapter._pool_maxsize == 7
    assert adapter._pool_block is True
    adapter.close()


class PicklableSource:
    """Stands in for a TokenSource whose store and grant can be pickled."""

    key = "pickled"
    hint = None

    def __init__(self) -> None:
        self.current = rt.Token("tok-p", expires_at=time.time() + 3600)

    def token(self):
        return self.current

    def refresh(self, stale=None):
        return self.current

    def is_usable(self, token):
        return True

    def clock(self):
        return time.time()


def test_adapter_pickles_with_its_configuration(mocked):
    """Like HTTPAdapter, the adapter pickles through __getstate__/__setstate__."""
    adapter = rt.TokenRotateAdapter(
        PicklableSource(),
        origins=[API],
        header="X-Auth",
        scheme="Token",
        refresh_on=[401],
        cooldown=5,
        max_retries=4,
    )
    clone = pickle.loads(pickle.dumps(adapter))
    assert clone.max_retries.total == 4
    transport = clone._policy
    assert (transport.header, transport.scheme, transport.refresh_on, transport.cooldown) == (
        "X-Auth",
        "Token",
        frozenset({401}),
        5.0,
    )
    with requests.Session() as session:
        session.mount("https://", clone)
        session.get(f"{API}/")
    assert mocked.calls[0].request.headers["X-Auth"] == "Token tok-p"
    adapter.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"origins": "api.example.com"},
        {"origins": ["ftp://api.example.com"]},
        {"origins": ["https://"]},
        {"origins": ["https://api.example.com:99999"]},
        {"header": "Bad Header"},
        {"header": ""},
        {"scheme": "Bear er"},
        {"refresh_on": [99]},
        {"refresh_on": ["401"]},
        {"refresh_on": [True]},
        {"cooldown": -1},
        {"refresh_margin": -5},
    ],
)
def test_bad_arguments_are_configuration_errors(source, kwargs):
    """Nonsense arguments raise InvalidConfiguration (also a ValueError) at construction."""
    kwargs = {"origins": API, **kwargs}
    name = next(iter(kwargs.keys() - {"origins"}), "origins")
    with pytest.raises(rt.InvalidConfiguration, match=name):
        rt.TokenRotateAdapter(source, **kwargs)
    with pytest.raises(ValueError, match=name):
        rt.TokenRotateAuth(source, **kwargs)


def test_not_a_token_source_is_a_configuration_error():
    """Passing something else than a source fails early."""
    with pytest.raises(rt.InvalidConfiguration):
        rt.TokenRotateAdapter("not a source", origins=API)  # type: ignore[arg-type]


def test_repr_shows_no_token(source):
    """repr names the key and the origins, never the token."""
    adapter = rt.TokenRotateAdapter(source, origins=[API, "http://localhost:8080"])
    text = repr(adapter)
    assert "fake" in text
    assert "https://api.example.com:443" in text
    assert "tok-1" not in text
    adapter.close()


def test_origins_accept_internationalised_hosts(session, source, mocked):
    """A Unicode host in origins matches requests' IDNA-encoded URL."""
    rt.mount(session, "https://bücher.example/", source)
    session.get("https://bücher.example/katalog")
    assert sent_authorization(mocked) == "Bearer tok-1"


def test_ipv6_origin(session, source, mocked):
    """An IPv6 literal origin is parsed and matched with its port."""
    rt.mount(session, "http://[::1]:8080/", source)
    session.get("http://[::1]:8080/x")
    session.get("http://[::1]:8081/x")
    assert sent_authorization(mocked, 0) == "Bearer tok-1"
    assert sent_authorization(mocked, 1) is None


def test_adapter_with_a_real_source_pickles(tmp_path):
    """An adapter over a real TokenSource (OAuthClient, discovery, stores) pickles and works after."""
    for store in (rt.FileTokenStore(tmp_path), rt.MemoryTokenStore()):
        client = rt.OAuthClient(issuer="https://idp.example.com", client_id="cli")
        source = rt.TokenSource(rt.RefreshTokenGrant(client), store, "k")
        source.login({"access_token": "a", "refresh_token": "r", "expires_in": 600})
        adapter = rt.TokenRotateAdapter(source, origins=["https://api.example.com"])
        clone = pickle.loads(pickle.dumps(adapter))
        assert clone.source.token().access_token == "a"
        clone.source.logout()
        assert clone.source.store.keys() == []


# -- the session auth that mount() installs ------------------------------------------
@pytest.fixture
def netrc(tmp_path, monkeypatch):
    """A real netrc file (NETRC) with entries for 127.0.0.1, api.example.com and other.example."""
    path = tmp_path / "netrc"
    path.write_text(
        "machine 127.0.0.1 login netrc-user password netrc-pass\n"
        "machine api.example.com login netrc-user password netrc-pass\n"
        "machine other.example login other-user password other-pass\n"
    )
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    return path


def test_a_netrc_entry_for_the_mounted_host_does_not_replace_the_token(idp, netrc):
    """With a netrc entry for the API host, the mounted origin still gets the bearer token
    (requests would otherwise send the netrc Basic credentials, and the IdP answer 401)."""
    source = rt.TokenSource(rt.RefreshTokenGrant(rt.OAuthClient(token_url=idp.token_url,
                            client_id="cli")), rt.MemoryTokenStore(), "k")  # fmt: skip
    source.login(idp.issue_tokens())
    with requests.Session() as session:
        rt.mount(session, idp.url + "/", source)
        assert isinstance(session.auth, rt.MountedAuth)
        response = session.get(idp.resource_url)
    assert response.status_code == 200
    assert response.request.headers["Authorization"] == "Bearer " + source.token().access_token


def test_other_hosts_keep_netrc_and_url_credentials(session, source, mocked, netrc):
    """Outside the mounted origins the session behaves as without auth: netrc first (when
    trust_env), then the URL's user info, as Basic; nothing at all when neither applies."""
    rt.mount(session, f"{API}/", source)
    session.get("https://other.example/a")
    session.get("https://u%40x:p%3Aw@third.example/b")
    session.get("https://third.example/c")
    session.trust_env = False
    session.get("https://other.example/d")
    sent = [call.request.headers.get("Authorization") for call in mocked.calls]
    assert sent[0] == requests.auth._basic_auth_str("other-user", "other-pass")
    assert sent[1] == requests.auth._basic_auth_str("u@x", "p:w")
    assert sent[2] is None
    assert sent[3] is None


def test_mount_keeps_a_session_auth_the_caller_set(session, source, mocked):
    """A session whose auth is already set keeps it; its header, being the caller's, wins."""
    session.auth = ("me", "secret")
    rt.mount(session, f"{API}/", source)
    assert session.auth == ("me", "secret")
    session.get(f"{API}/x")
    assert sent_authorization(mocked) == requests.auth._basic_auth_str("me", "secret")


def test_two_mounts_share_one_session_auth(session, source, mocked):
    """A second mount adds its origins to the auth the first one installed."""
    rt.mount(session, f"{API}/", source)
    installed = session.auth
    rt.mount(session, "https://second.example/", source)
    assert session.auth is installed
    assert "https://second.example" in repr(installed)
    session.get("https://second.example/x")
    assert sent_authorization(mocked) == "Bearer tok-1"


def test_a_mounted_session_pickles_and_still_sends_the_token(mocked):
    """Session pickling carries the installed auth along with the adapter."""
    with requests.Session() as session:
        rt.mount(session, f"{API}/", PicklableSource())
        clone = pickle.loads(pickle.dumps(session))
    with clone:
        assert isinstance(clone.auth, rt.MountedAuth)
        clone.get(f"{API}/x")
        clone.get("https://u:p@third.example/")
    assert sent_authorization(mocked, 0) == "Bearer tok-p"
    assert sent_authorization(mocked, 1) == requests.auth._basic_auth_str("u", "p")
