"""``next=`` after login keeps the browser on this site: probes through the real daemon.

Each probe goes in as a browser could send it -- in the login page's query string (while
logged in: the page redirects at once), and as the form's ``next`` field of the login
POST -- and every ``Location`` the daemon answers is resolved the way a browser resolves
it (WHATWG URL parsing: tabs and newlines dropped, ``\\`` read as ``/``, leading spaces and
controls trimmed).  It must land on this site's own origin.  The spawn page a login may
send the browser to carries ``next`` on, so that hop is followed too.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import pytest
import requests

from support import Daemon, login

PASSWORD = "next-probe-password"

PROBES = [
    "//evil.example", "///evil.example", "////evil.example", "//evil.example/hub/home",
    "/\\evil.example", "\\\\evil.example", "/\\/evil.example", "\\/evil.example",
    "https://evil.example", "HTTPS://evil.example", "https:evil.example", "http:/evil.example",
    "https:/\\evil.example", "https:%2F%2Fevil.example", "javascript:alert(1)",
    "JaVaScRiPt:alert(1)", " javascript:alert(1)", "data:text/html,<script>alert(1)</script>",
    "evil.example", "evil.example/hub/home", ".//evil.example",
    "%2F%2Fevil.example", "/%2F%2Fevil.example", "/%2f%2fevil.example", "/%5Cevil.example",
    "/%5cevil.example", "%5C%5Cevil.example", "/%252F%252Fevil.example",
    "/%25252F%25252Fevil.example", "%252F%252Fevil.example",
    "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example",
    " //evil.example", "\x00//evil.example", "/%09/evil.example", "/%0a/evil.example",
    "/%0d%0a/evil.example", "/%00/evil.example", "/./\\evil.example", "/.\\evil.example",
    "/../\\evil.example", "/%2e/%5cevil.example", "/\u3000/evil.example",
    "/\uff0f/evil.example", "/hub/home\r\nSet-Cookie: x=1", "/hub/%0d%0aSet-Cookie:x=1",
]

# Paths on the site are honoured (else a test of refusals alone could pass by never
# following next= at all).
LOCAL = ["/hub/token", "/hub/admin?q=a", "/hub/history/carol"]


def browser_resolve(base: str, location: str) -> str:
    """The absolute URL a browser goes to for this Location on a page at ``base``."""
    cleaned = location.strip("".join(chr(c) for c in range(0x21)))
    cleaned = re.sub(r"[\t\n\r]", "", cleaned).replace("\\", "/")
    return urljoin(base, cleaned)


def assert_on_site(base: str, location: str) -> None:
    assert not re.search(r"[\x00-\x1f\x7f]", location), repr(location)
    target = urlsplit(browser_resolve(base + "/hub/login", location))
    site = urlsplit(base)
    assert (target.scheme, target.netloc) == (site.scheme, site.netloc), repr(location)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("next"),
               {"auth": {"start_on_login": False, "stop_on_logout": False}})
    d.start()
    d.add_user("carol", PASSWORD)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def logged_in(site):
    session, r = login(site.url, "carol", PASSWORD)
    assert r.status_code == 303
    return session


def login_page_location(session: requests.Session, base: str, query: str) -> str:
    r = session.get(f"{base}/hub/login?{query}", allow_redirects=False)
    assert r.status_code == 302, r.text
    return r.headers["Location"]


@pytest.mark.parametrize("probe", PROBES)
def test_login_page_while_logged_in_stays_on_site(site, logged_in, probe):
    locations = [login_page_location(logged_in, site.url, "next=" + quote(probe, safe=""))]
    if not re.search(r"[\x00-\x20\x7f\u3000\uff0f<>]", probe):  # also as typed into a URL
        locations.append(login_page_location(logged_in, site.url, "next=" + probe))
    for location in locations:
        assert_on_site(site.url, location)
        assert location == "/hub/home"


def post_login(base: str, next_field: str) -> requests.Response:
    """The login form POST with ``next`` exactly as given (a forged form can send anything)."""
    s = requests.Session()
    page = s.get(base + "/hub/login")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    r = s.post(base + "/hub/login", allow_redirects=False, headers={"Origin": base},
               data={"_csrf": csrf, "username": "carol", "password": PASSWORD,
                     "next": next_field})
    assert r.status_code == 303, r.text
    return r


@pytest.mark.parametrize("probe", PROBES)
def test_login_form_post_stays_on_site(site, probe):
    location = post_login(site.url, probe).headers["Location"]
    assert_on_site(site.url, location)
    # start_on_login is off: the login goes to the spawn page, which carries next= on
    path = urlsplit(location)
    assert path.path == "/hub/spawn/carol"
    carried = parse_qs(path.query).get("next", [])
    assert carried == ["/user/carol/lab"]
    assert_on_site(site.url, carried[0])


@pytest.mark.parametrize("target", LOCAL)
def test_local_targets_are_followed(site, logged_in, target):
    assert login_page_location(logged_in, site.url, "next=" + quote(target, safe="")) == target
    assert post_login(site.url, target).headers["Location"] == target
    spawn = post_login(site.url, "/user/carol/tree").headers["Location"]
    assert parse_qs(urlsplit(spawn).query)["next"] == ["/user/carol/tree"]


def test_spawn_page_next_stays_on_site(site, logged_in):
    """The spawn page's own redirect (server running) uses the same rule."""
    for probe in ("//evil.example", "/\\evil.example", "https:evil.example"):
        page = logged_in.get(f"{site.url}/hub/spawn/carol?next={quote(probe, safe='')}")
        assert page.status_code == 200
        assert "evil.example" not in page.text


def test_non_ascii_query_values_get_an_answer(site):
    """A percent-encoded UTF-8 value once dropped the connection with no response."""
    r = requests.get(site.url + "/hub/login?next=/user/carol/tree/%C3%A9t%C3%A9", timeout=10)
    assert r.status_code == 200 and 'name="next"' in r.text
