"""A scripted "browser" for the login tests: completes an authorization over plain HTTP.

    scripted_browser.py URL

Run by ``webbrowser`` through ``$BROWSER`` (via a small executable wrapper, since
``$BROWSER`` names one command) or directly by a test. It optionally signs in
first (``SCRIPTED_BROWSER_LOGIN`` URL with ``SCRIPTED_BROWSER_USER`` and
``SCRIPTED_BROWSER_PASSWORD``, for django-oauth-toolkit), opens URL, follows the
authorization server's redirects to the loopback redirect URI and requests it,
as a browser would. ``SCRIPTED_BROWSER_STATE`` and ``SCRIPTED_BROWSER_ISS``
replace the ``state`` and ``iss`` in the redirect (a forged answer). Exit code 0 when the loopback page answered 200.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

MAX_HOPS = 5


def main(url: str) -> int:
    redirect_uri = dict(parse_qsl(urlsplit(url).query)).get("redirect_uri", "")
    with requests.Session() as session:
        login = os.environ.get("SCRIPTED_BROWSER_LOGIN")
        if login:
            form = {
                "username": os.environ["SCRIPTED_BROWSER_USER"],
                "password": os.environ["SCRIPTED_BROWSER_PASSWORD"],
            }
            session.post(login, data=form, timeout=10).raise_for_status()
        for _ in range(MAX_HOPS):
            response = session.get(url, allow_redirects=False, timeout=10)
            location = response.headers.get("Location")
            if response.status_code not in (301, 302, 303, 307) or not location:
                print(f"browser: {response.status_code} at the authorization server", file=sys.stderr)
                return 1
            url = urljoin(url, location)
            if redirect_uri and url.startswith(redirect_uri):
                break
        else:
            return 1
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        for name in ("state", "iss"):
            forged = os.environ.get(f"SCRIPTED_BROWSER_{name.upper()}")
            if forged is not None:
                query[name] = forged
        url = urlunsplit(parts._replace(query=urlencode(query)))
        answer = session.get(url, timeout=10)
        return 0 if answer.status_code == 200 else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
