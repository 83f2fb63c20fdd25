"""The admin dashboard (``/hub/admin``): every account with its server's state, live CPU
and memory (``/hub/admin/api/servers``, polled by ``admin.js``), recent events, adding an
account and start / stop / disable / enable; every named server (issue 19 §1) with its
owner, name and state, and stop; groups (issue 19: create with admin flag and profiles,
add and remove members, delete; default limits are set with ``ipydoc group set``).

Admins only (a 403 page for others, JSON answers for the API).  Actions are form POSTs
under the one CSRF and ``Origin`` rule of :mod:`ipydoc.web.pages`; stop and disable ask for
confirmation without JavaScript.  ``back=`` (the filtered, sorted view to return to) only
ever points into ``/hub/admin``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from klein import Klein
from twisted.internet import threads
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ipydoc.access.passwords import WeakPassword, check_strength, hash_password
from ipydoc.access.sessions import Session
from ipydoc.backends.base import BackendError
from ipydoc.edge.redirects import safe_next
from ipydoc.edge.request_args import arg
from ipydoc.names import (
    SERVER_KEY_SEPARATOR,
    InvalidName,
    normalize_login,
    server_key,
    validate_name,
    validate_server_name,
)
from ipydoc.state.users import NameReserved
from ipydoc.web.pages import Pages, RedisDown, notice, redis_down
from ipydoc.web.present import SORTS, Row, StatsCache, sort_rows

ACTIONS = ("start", "stop", "disable", "enable")
DESTRUCTIVE = {"stop", "disable"}


def with_notice(back: str, done: str, user: str) -> str:
    return back + ("&" if "?" in back else "?") + urlencode({"done": done, "user": user})


class AdminPages:
    app = Klein()
    app.handle_errors(RedisDown)(redis_down)
    log = Logger()

    def __init__(self, pages: Pages, stats: StatsCache) -> None:
        self.pages = pages
        self.stats = stats

    @property
    def store(self) -> Any:
        return self.pages.store

    async def rows(self) -> list[Row]:
        names = await self.store.all_user_names()
        users = await self.store.get_users(names)
        servers = await self.store.get_servers(names)
        activity = await self.store.activity()
        stats = self.stats.latest()
        admins = await self.store.admins_among(names)  # the one rule: groups count
        rows = []
        for u in users:
            server = servers.get(u.name)
            state = self.pages.server_state(u.name, server)
            rows.append(Row(u.name, u.name in admins, u.disabled, u.created, state,
                            server.error if server and state == "failed" else "",
                            activity.get(u.name), stats.get(u.name)
                            if state in ("running", "paused") else None,
                            server.paused_since if server and state == "paused" else None))
        return rows

    async def named_rows(self) -> list[dict[str, Any]]:
        """Every named server: owner, name, state (the default ones are the user rows)."""
        rows = []
        for record in await self.store.list_servers():
            owner, sep, server = record.name.partition(SERVER_KEY_SEPARATOR)
            if sep:
                state = self.pages.server_state(record.name, record)
                rows.append({"key": record.name, "owner": owner, "server": server,
                             "state": state, "profile": record.profile,
                             "error": record.error if state == "failed" else ""})
        return sorted(rows, key=lambda r: (r["owner"], r["server"]))

    async def running_containers(self) -> dict[str, str]:
        routes = self.pages.manager.routes
        servers = await self.store.get_servers(list(routes))
        return {n: s.id for n, s in servers.items() if s.id and n in routes}

    @app.route("/admin", methods=["GET"])
    async def admin(self, request: IRequest) -> bytes:
        session = await self.pages.admin_session(request)
        if not isinstance(session, Session):
            return session
        return await self.page(request, session)

    async def page(self, request: IRequest, session: Session, *, error: str = "",
                   form: dict[str, Any] | None = None, code: int = 200,
                   group_error: str = "", group_form: dict[str, Any] | None = None) -> bytes:
        q = arg(request, "q").strip().lower()[:64]
        sort = arg(request, "sort")
        sort = sort if sort in SORTS else "name"
        order = "desc" if arg(request, "order") == "desc" else "asc"
        rows = await self.rows()
        servers = await self.store.get_servers([r.name for r in rows])
        groups = [(g, await self.store.group_members(g.name))
                  for g in await self.store.list_groups()]
        total = len(rows)
        if q:
            rows = [r for r in rows if q in r.name]
        rows = sort_rows(rows, sort, order == "desc")
        back = "/hub/admin" + ("?" + urlencode({"q": q, "sort": sort, "order": order})
                               if q or sort != "name" or order != "asc" else "")
        return self.pages.render(
            request, "admin.html", code, user=session.user, csrf=session.csrf, page="admin",
            is_admin=True, rows=rows, total=total, q=q, sort=sort, order=order, sorts=SORTS,
            back=back, events=await self.store.recent_events(30), error=error,
            form=form or {}, notice=notice(request), now=time.time(),
            stats_available=self.stats.stats is not None, groups=groups,
            named=await self.named_rows(),
            profiles={n: s.profile for n, s in servers.items() if s.profile},
            catalogue=self.pages.manager.limits.catalogue.profiles,
            group_error=group_error, group_form=group_form or {})

    @app.route("/admin/api/servers", methods=["GET"])
    async def servers(self, request: IRequest) -> bytes:
        """Live state of every user, CPU and memory of running servers, recent events."""
        session = await self.pages.admin_session(request, api=True)
        if not isinstance(session, Session):
            return session
        stats = await self.stats.sample(await self.running_containers())
        rows = await self.rows()
        return self.pages.json(request, {
            "time": time.time(),
            "users": {r.name: {"state": r.state, "error": r.error, "disabled": r.disabled,
                               "paused_since": r.paused_since,
                               "last_activity": r.last_activity, "stats": stats.get(r.name)}
                      for r in rows},
            "events": await self.store.recent_events(30),
        })

    def _back(self, request: IRequest) -> str:
        back = safe_next(arg(request, "back"), "/hub/admin")
        return back if back == "/hub/admin" or back.startswith("/hub/admin?") else "/hub/admin"

    @app.route("/admin/users", methods=["POST"])
    async def add_user(self, request: IRequest) -> bytes:
        session = await self._admin_post(request)
        if not isinstance(session, Session):
            return session
        typed = arg(request, "name")
        password = arg(request, "password")
        admin = arg(request, "admin") == "1"
        form = {"name": typed, "admin": admin}
        try:
            name = normalize_login(typed)
            check_strength(password)
        except (InvalidName, WeakPassword) as e:
            return await self.page(request, session, error=str(e).capitalize() + ".",
                                   form=form, code=400)
        hashed = await threads.deferToThread(hash_password, password)
        try:
            added = await self.store.add_user(name, hashed, admin)
        except NameReserved:  # a removed account's files are kept (ipydoc.control.removal)
            return await self.page(request, session, form=form, code=409, error=(
                f"The name {name} belonged to a removed account whose files are kept; "
                f"purge them with `ipydoc user purge {name} --yes` or restore the account "
                f"with `ipydoc user restore {name}`."))
        if not added:
            return await self.page(request, session, error=f"The user {name} exists.",
                                   form=form, code=409)
        await self.store.add_event("user-add", name, f"by {session.user}"
                                                     + (" (admin)" if admin else ""))
        self.log.info("{admin} added the user {name}", admin=session.user, name=name)
        return self.pages.redirect(request, with_notice(self._back(request), "added", name))

    @app.route("/admin/users/<name>/<action>", methods=["POST"])
    async def action(self, request: IRequest, name: str, action: str) -> bytes:
        pages = self.pages
        session = await self._admin_post(request)
        if not isinstance(session, Session):
            return session
        if action not in ACTIONS:
            return pages.error(request, 404, "Not found", "There is no such action.", session)
        try:
            validate_name(name)
        except InvalidName:
            return pages.error(request, 404, "Not found", "There is no such user.", session)
        user = await self.store.get_user(name)
        if user is None:
            return pages.error(request, 404, "Not found", "There is no such user.", session)
        back = self._back(request)
        if action == "disable" and name == session.user:
            return pages.error(request, 409, "Not done",
                               "You cannot disable your own account.", session)
        if action == "start" and user.disabled:
            return pages.error(request, 409, "Not done",
                               f"{name} is disabled; enable the account first.", session)
        if action in DESTRUCTIVE and arg(request, "confirmed") != "1":
            what = {"stop": (f"Stop the server of {name}?",
                             "Unsaved work in their notebooks is lost; their files stay."),
                    "disable": (f"Disable {name}?",
                                "They are logged out everywhere, their server stops and their "
                                "tokens stop working; their files stay.")}[action]
            return pages.confirm(request, session, title=what[0], message=what[1],
                                 action=f"/hub/admin/users/{name}/{action}",
                                 button=action.capitalize(), fields={"back": back}, back=back)
        manager = pages.manager
        try:
            if action == "start":
                pages.start_in_background(name)
            elif action == "stop":
                await manager.stop(name, f"stopped by admin {session.user}")
            elif action == "disable":
                await self.store.update_user(name, disabled=True)
                await self.store.revoke_sessions(name)
                await manager.stop_all(name, f"account disabled by {session.user}")
            elif action == "enable":
                await self.store.update_user(name, disabled=False)
        except BackendError as e:
            return pages.error(request, 502, "Not done", e.message, session)
        if action in ("disable", "enable"):
            await self.store.add_event(f"user-{action}", name, f"by {session.user}")
        self.log.info("{admin}: {action} {name}", admin=session.user, action=action, name=name)
        return pages.redirect(request, with_notice(back, action, name))

    @app.route("/admin/servers/<name>/<server>/stop", methods=["POST"])
    async def stop_named(self, request: IRequest, name: str, server: str) -> bytes:
        """Stop a user's named server (after a confirmation without JavaScript)."""
        pages = self.pages
        session = await self._admin_post(request)
        if not isinstance(session, Session):
            return session
        try:
            key = server_key(name, validate_server_name(server))
        except InvalidName:
            return pages.error(request, 404, "Not found", "There is no such server.", session)
        back = self._back(request)
        if arg(request, "confirmed") != "1":
            return pages.confirm(request, session, title=f"Stop the server {server} of {name}?",
                                 message="Unsaved work in its notebooks is lost; the files "
                                         "stay.",
                                 action=f"/hub/admin/servers/{name}/{server}/stop",
                                 button="Stop", fields={"back": back}, back=back)
        try:
            await pages.manager.stop(key, f"stopped by admin {session.user}")
        except BackendError as e:
            return pages.error(request, 502, "Not done", e.message, session)
        self.log.info("{admin}: stop {key}", admin=session.user, key=key)
        return pages.redirect(request, with_notice(back, "stop", name))

    async def _admin_post(self, request: IRequest) -> Session | bytes:
        """The admin session of a form POST (CSRF + Origin), else the answer."""
        session = await self.pages.admin_session(request)
        if isinstance(session, Session) and not self.pages.post_allowed(request, session.csrf):
            return self.pages.expired_form(request, session)
        return session

    # -- groups ---------------------------------------------------------------------------
    def _group_done(self, request: IRequest, done: str, group: str) -> bytes:
        return self.pages.redirect(request, "/hub/admin?" + urlencode(
            {"done": done, "user": group}) + "#groups")

    @app.route("/admin/groups", methods=["POST"])
    async def add_group(self, request: IRequest) -> bytes:
        session = await self._admin_post(request)
        if not isinstance(session, Session):
            return session
        typed = arg(request, "name").strip().lower()
        admin = arg(request, "admin") == "1"
        chosen = [p.decode("utf-8", "replace") for p in request.args.get(b"profile", [])]
        form = {"name": typed, "admin": admin, "profiles": chosen}
        known = self.pages.manager.limits.catalogue.by_name
        try:
            name = validate_name(typed)
        except InvalidName as e:
            return await self.page(request, session, group_error=f"Group name: {e}.",
                                   group_form=form, code=400)
        unknown = [p for p in chosen if p not in known]
        if unknown:
            return await self.page(request, session, group_form=form, code=400,
                                   group_error=f"No such profile: {', '.join(unknown)}.")
        if not await self.store.add_group(name):
            return await self.page(request, session, group_form=form, code=409,
                                   group_error=f"The group {name} exists.")
        await self.store.set_group(name, admin=admin, profiles=chosen)
        await self.store.add_event("group-add", "", f"{name} by {session.user}"
                                                    + (" (admin)" if admin else ""))
        self.log.info("{admin} added the group {name}", admin=session.user, name=name)
        return self._group_done(request, "group-added", name)

    @app.route("/admin/groups/<group>/members", methods=["POST"])
    async def add_member(self, request: IRequest, group: str) -> bytes:
        session = await self._admin_post(request)
        if not isinstance(session, Session):
            return session
        member = arg(request, "user").strip().lower()
        pages = self.pages
        try:
            validate_name(group)
            validate_name(member)
        except InvalidName as e:
            return pages.error(request, 400, "Not done", f"{str(e).capitalize()}.", session)
        if await self.store.get_group(group) is None:
            return pages.error(request, 404, "Not found", "There is no such group.", session)
        if not await self.store.user_exists(member):
            return pages.error(request, 404, "Not found", f"There is no user {member}.",
                               session)
        if await self.store.add_member(group, member):
            await self.store.add_event("group-member-add", member, f"{group} by {session.user}")
        return self._group_done(request, "member-added", group)

    @app.route("/admin/groups/<group>/members/<member>/remove", methods=["POST"])
    async def remove_member(self, request: IRequest, group: str, member: str) -> bytes:
        session = await self._admin_post(request)
        if not isinstance(session, Session):
            return session
        try:
            validate_name(group)
            validate_name(member)
        except InvalidName:
            return self.pages.error(request, 404, "Not found", "No such membership.", session)
        if await self.store.remove_member(group, member):
            await self.store.add_event("group-member-remove", member,
                                       f"{group} by {session.user}")
        return self._group_done(request, "member-removed", group)

    @app.route("/admin/groups/<group>/remove", methods=["POST"])
    async def remove_group(self, request: IRequest, group: str) -> bytes:
        session = await self._admin_post(request)
        if not isinstance(session, Session):
            return session
        try:
            validate_name(group)
        except InvalidName:
            return self.pages.error(request, 404, "Not found", "There is no such group.",
                                    session)
        if arg(request, "confirmed") != "1":
            return self.pages.confirm(
                request, session, title=f"Delete the group {group}?",
                message="Its members keep their accounts but lose what the group gave "
                        "them (admin rights, profiles, default limits).",
                action=f"/hub/admin/groups/{group}/remove", button="Delete",
                fields={}, back="/hub/admin#groups")
        if await self.store.remove_group(group):
            await self.store.add_event("group-remove", "", f"{group} by {session.user}")
        return self._group_done(request, "group-removed", group)
