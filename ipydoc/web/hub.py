"""The hub (``/hub/…``): its whole URL map, and the page groups that answer it.

Each page group is its own Klein app in its own module, with the full paths and methods it
serves; :class:`HubSite` is the parent app that sends each path prefix to one group with a
Klein branch route, so this module is the one place that lists every URL of the hub:

===================================  ===============================================
``/hub/``                            to home or login            :mod:`.home_pages`
``/hub/static/…``                    scripts and styles           (files, below)
``/hub/login``, ``/hub/logout``      local login, logout          :mod:`.login_pages`
``/hub/oauth/<id>/start|callback``   login providers              :mod:`.provider_pages`
``/hub/home``, ``/hub/spawn/<n>``,   the user's servers: home,   :mod:`.home_pages`
``/hub/stop/<n>``,                   spawn page and form, stop;
``/hub/servers/<n>``,                a new named server, remove
``/hub/remove/<n>/<server>``         a stopped named one
``/hub/api/…``                       the REST API (tokens,        :mod:`.api.app`
                                     OpenAPI), the start progress
                                     (events) ``spawn.js`` reads
``/hub/password``, ``/hub/token…``   own password, API tokens     :mod:`.account_pages`
``/hub/admin…``                      admin dashboard and actions  :mod:`.admin_pages`
``/hub/history/<n>…``                versions, diff, restore      :mod:`.history_pages`
``/hub/repository/<n>…``             the user's own history      :mod:`.history_repo_pages`
                                     repository: link, retry,
                                     unlink; and the GitHub
                                     connect callback (below)
``/hub/handoff``                     to a user's host (subdomain) :mod:`.handoff_page`
``/hub/shares/<n>``,                 add and revoke a share of    :mod:`.share_pages`
``/hub/unshare/<n>``                 one of the user's servers
``/hub/metrics``                     Prometheus, bearer token     :mod:`.metrics_page`
===================================  ===============================================

Why the groups see the whole path: a Klein branch route moves the prefix it matched into
``request.prepath``; werkzeug then routes the group on what is left, so ``/hub/login`` and
``/hub/logout`` would both reach the login group as an empty path (and be redirected to
a trailing slash).  :meth:`HubSite._mount` gives the prefix back before the group routes,
so a group's routes read as the URLs users and tests see, and one group can own several
prefixes.  ``tests/web/test_hub_map.py`` checks every prefix reaches its group.  The
longer prefix ``/oauth/github/callback/repository`` (the connect flow of a user's own
repository, below the login callback registered with GitHub) wins over ``/oauth``:
werkzeug prefers the longer static path.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Callable, Mapping

from klein import Klein
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.static import File

from ipydoc.access.login_limits import LoginLimits
from ipydoc.access.return_hint import ReturnHints
from ipydoc.access.sessions import Sessions
from ipydoc.auth.base import Provider
from ipydoc.auth.login_state import Limits as ProviderLimits
from ipydoc.edge.routing import Routing
from ipydoc.servers.manager import ServerManager
from ipydoc.servers.prestart import LoginPagePrestart
from ipydoc.servers.static_cache import StaticCache
from ipydoc.web.account_pages import AccountPages
from ipydoc.web.admin_pages import AdminPages
from ipydoc.web.api.app import ApiPages
from ipydoc.web.api.users import AccountRemoval
from ipydoc.web.handoff_page import HandoffPage, HandoffTokens
from ipydoc.web.history_pages import HistoryPages, HistoryReader
from ipydoc.web.history_repo_pages import HistoryRepoPages
from ipydoc.web.home_pages import HomePages
from ipydoc.web.login_pages import LoginPages
from ipydoc.web.metrics_page import MetricsPage
from ipydoc.web.pages import Gate, HubSettings, Pages
from ipydoc.web.present import StatsCache, StatsFn
from ipydoc.web.provider_pages import ProviderPages
from ipydoc.web.share_pages import SharePages

#: Path prefix under ``/hub`` → the page group that answers it (see the table above).
URL_MAP: tuple[tuple[str, str], ...] = (
    ("/login", "login"), ("/logout", "login"),
    ("/oauth", "providers"),
    ("/home", "home"), ("/spawn", "home"), ("/stop", "home"),
    ("/servers", "home"), ("/remove", "home"),
    ("/api", "api"),
    ("/password", "account"), ("/token", "account"),
    ("/admin", "admin"),
    ("/history", "history"),
    ("/repository", "repository"), ("/oauth/github/callback/repository", "repository"),
    ("/handoff", "handoff"),
    ("/shares", "shares"), ("/unshare", "shares"),
    ("/metrics", "metrics"),
)


def _mount(prefix: str, group: str) -> Callable[[Any, IRequest], IResource]:
    depth = len(prefix.strip("/").split("/"))

    def serve(self: HubSite, request: IRequest) -> IResource:
        # Klein moved the matched prefix into prepath: give it back (see the docstring).
        request.postpath[:0] = request.prepath[-depth:]
        del request.prepath[-depth:]
        return self.groups[group]

    serve.__name__ = f"mount {prefix}"
    return serve


class HubSite:
    """The parent Klein app: ``/`` and ``/static/`` itself, every other prefix to a group."""

    app = Klein()
    for _prefix, _group in URL_MAP:
        app.route(_prefix, branch=True, endpoint=f"mount {_prefix}")(_mount(_prefix, _group))
    del _prefix, _group

    def __init__(self, groups: Mapping[str, Any]) -> None:
        self.groups = {name: group.app.resource() for name, group in groups.items()}
        self._static = File(str(resources.files("ipydoc.web") / "static"))

    def resource(self) -> IResource:
        return self.app.resource()

    @app.route("/", endpoint="index")
    def index(self, request: IRequest) -> IResource:
        return self.groups["home"]  # nothing to give back: "/" consumed no segment

    @app.route("/static/", branch=True)
    def static(self, request: IRequest) -> IResource:
        request.setHeader(b"Cache-Control", b"max-age=3600")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return self._static


def make_hub(*, sessions: Sessions, manager: ServerManager, gate: Gate, routing: Routing,
             settings: HubSettings, hosts: HandoffTokens | None = None,
             history: HistoryReader | None = None, stats: StatsFn | None = None,
             providers: Mapping[str, Provider] | None = None, local_login: bool = True,
             provider_limits: ProviderLimits = ProviderLimits(),
             public_url: str = "", metrics_token: str | None = None,
             static: StaticCache | None = None,
             removal: AccountRemoval | None = None,
             prestart: LoginPagePrestart | None = None,
             hints: ReturnHints | None = None) -> HubSite:
    """The hub with its page groups, from the daemon's parts (:mod:`ipydoc.tap`)."""
    providers = dict(providers or {})
    pages = Pages(sessions, manager, gate)
    limits = LoginLimits(sessions, settings.login_limits)
    login = LoginPages(pages, settings, limits, routing, local=local_login,
                       providers=providers.values(), hints=hints, prestart=prestart)
    return HubSite({
        "login": login,
        "providers": ProviderPages(pages, login, providers, limits=provider_limits,
                                   base_url=public_url),
        "home": HomePages(pages, settings, routing, static),
        "account": AccountPages(pages, limits, routing),
        "admin": AdminPages(pages, StatsCache(stats)),
        "history": HistoryPages(pages, history),
        "repository": HistoryRepoPages(pages, getattr(history, "user_repos", None), providers,
                                       limits=provider_limits, base_url=public_url),
        "handoff": HandoffPage(pages, routing, hosts),
        "shares": SharePages(pages),
        "metrics": MetricsPage(metrics_token),  # metrics.token_file; None: 404
        "api": ApiPages(pages, routing, history, removal),
    })
