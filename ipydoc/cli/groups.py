"""``ipydoc group ...`` and ``ipydoc profile list``: groups (members, admin rights,
profiles, default limits) and the profiles users may pick (issue 19)."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from ipydoc.cli.client import Handler, Target, result, with_daemon
from ipydoc.cli.errors import EXIT_OK, EXIT_USAGE, CliError
from ipydoc.cli.output import binary_size, details, emit, table, yes


def add_parsers(group: Callable[..., Any], cmd: Callable[..., Any]) -> None:
    """The ``group`` and ``profile`` commands (called by :func:`ipydoc.cli.parser.build_parser`)."""
    g = group("group", "groups of users: admin rights, profiles, default limits")

    def props(q: argparse.ArgumentParser, setting: bool) -> None:
        q.add_argument("--admin", action=argparse.BooleanOptionalAction, default=None,
                       help="members are admins (--no-admin: they are not)")
        q.add_argument("--profiles", metavar="A,B",
                       help="the profiles members may pick (comma-separated; \"\" for none)")
        q.add_argument("--mem", metavar="SIZE", help="default memory limit, e.g. 2G (0: none)")
        q.add_argument("--cpu", type=float, metavar="CPUS", help="default CPU limit (0: none)")
        q.add_argument("--pids", type=int, metavar="N", help="default process limit (0: none)")
        if setting:
            q.add_argument("--clear", metavar="mem,cpu,pids",
                           help="drop default limits (the config's apply again)")

    cmd(g, "list", "every group: admin, profiles, default limits, member count")
    cmd(g, "show", "one group and its members (and where each membership comes from)"
        ).add_argument("name", help="group name")
    q = cmd(g, "add", "create a group",
            "Create a group (a name by the user-name rule). Its properties can be set at "
            "once: --admin makes its members admins, --profiles the profiles they may pick, "
            "--mem/--cpu/--pids default limits for a profile that sets none.")
    q.add_argument("name", help="group name")
    props(q, False)
    q = cmd(g, "set", "change a group's properties",
            "Change a group's admin flag, profiles or default limits; applies to admin "
            "checks at once and to limits at the members' next start.")
    q.add_argument("name", help="group name")
    props(q, True)
    cmd(g, "remove", "delete a group (its members keep their accounts)"
        ).add_argument("name", help="group name")
    members = g.add_parser("members", help="add or remove members",
                           description="add or remove members")
    msub = members.add_subparsers(dest="member_action", metavar="ACTION", required=True)
    for action, text in (("add", "add users to a group by hand (a login never removes "
                                 "such a membership)"),
                         ("remove", "remove users from a group (a provider's membership "
                                    "comes back at their next login while it still reports it)")):
        q = cmd(msub, action, text)
        q.add_argument("name", help="group name")
        q.add_argument("users", nargs="+", metavar="USER", help="user names")

    p = group("profile", "server profiles ([[profiles]] in the config)")
    cmd(p, "list", "the site's profiles, or those a user may pick (--user)",
        "The profiles of the config: image, limits, volumes, GPUs, and the names (never "
        "the values) of their environment variables. With --user, the ones that user may "
        "pick (profiles_for_everyone and their groups' profiles)."
        ).add_argument("--user", metavar="NAME", help="only the profiles NAME may pick")


def _props(args: argparse.Namespace) -> str:
    from ipydoc.config.types import parse_size

    out: dict[str, Any] = {}
    if args.admin is not None:
        out["admin"] = args.admin
    if args.profiles is not None:
        out["profiles"] = [p.strip() for p in args.profiles.split(",") if p.strip()]
    limits: dict[str, Any] = {}
    if args.mem is not None:
        try:
            limits["mem"] = parse_size(args.mem) if args.mem != "0" else 0
        except ValueError as e:
            raise CliError(f"--mem: {e}", EXIT_USAGE) from None
    if args.cpu is not None:
        limits["cpu"] = args.cpu
    if args.pids is not None:
        limits["pids"] = args.pids
    if limits:
        out["limits"] = limits
    return json.dumps(out)


def _limits(lim: dict[str, Any]) -> str:
    shown = []
    for k, v in lim.items():
        if v is not None:
            shown.append(f"{k}={'none' if not v else binary_size(v) if k == 'mem' else v}")
    return " ".join(shown) or "-"


def _group_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import group_commands as g

    items = json.loads(with_daemon(target, lambda p: p.callRemote(g.GroupList))["items"])
    emit(args, items, table([[i["name"], yes(i["admin"]), ",".join(i["profiles"]) or "-",
                              _limits(i["limits"]), i["members"]] for i in items],
                            ["NAME", "ADMIN", "PROFILES", "DEFAULT LIMITS", "MEMBERS"]))
    return EXIT_OK


def _group_show(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import group_commands as g

    r = result(target, g.GroupShow, name=args.name)
    emit(args, r, details({**r, "profiles": ",".join(r["profiles"]) or "-",
                           "limits": _limits(r["limits"])}))
    return EXIT_OK


def _group_add(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import group_commands as g

    r = result(target, g.GroupAdd, name=args.name, props=_props(args))
    emit(args, r, f"added the group {args.name}")
    return EXIT_OK


def _group_set(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import group_commands as g

    r = result(target, g.GroupSet, name=args.name, props=_props(args), clear=args.clear or "")
    emit(args, r, details({**r, "profiles": ",".join(r["profiles"]) or "-",
                           "limits": _limits(r["limits"])}))
    return EXIT_OK


def _group_remove(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import group_commands as g

    r = result(target, g.GroupRemove, name=args.name)
    emit(args, r, f"removed the group {args.name} ({len(r['members'])} members)")
    return EXIT_OK


def _group_members(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import group_commands as g
    from ipydoc.names import InvalidName, validate_name

    for user in args.users:
        try:
            validate_name(user)
        except InvalidName as e:
            raise CliError(f"invalid user name {user!r}: {e}", EXIT_USAGE) from None
    command = g.GroupMemberAdd if args.member_action == "add" else g.GroupMemberRemove

    async def work(p: Any) -> list[dict[str, Any]]:
        return [json.loads((await p.callRemote(command, name=args.name, user=u))["result"])
                for u in args.users]

    done = with_daemon(target, work)
    verb = "added to" if args.member_action == "add" else "removed from"
    emit(args, done, "\n".join(
        f"{d['user']} {verb} {d['name']}" if d["changed"] else f"{d['user']}: no change"
        for d in done))
    return EXIT_OK


def _profile_list(args: argparse.Namespace, target: Target) -> int:
    from ipydoc.control import group_commands as g

    answer = with_daemon(target, lambda p: p.callRemote(g.ProfileList, user=args.user or None))
    items = json.loads(answer["items"])
    emit(args, items, table([[i["name"] + (" (default)" if i["default"] else ""), i["title"],
                              i["image"] or "[spawn]",
                              _limits({"mem": i["mem_limit"], "cpu": i["cpu_limit"],
                                       "pids": i["pids_limit"]}),
                              ",".join(v["target"] for v in i["volumes"]) or "-",
                              i["gpus"] or "-", yes(i["for_everyone"])] for i in items],
                            ["NAME", "TITLE", "IMAGE", "LIMITS", "VOLUMES", "GPUS",
                             "EVERYONE"]))
    return EXIT_OK


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("group", "list"): _group_list,
    ("group", "show"): _group_show,
    ("group", "add"): _group_add,
    ("group", "set"): _group_set,
    ("group", "remove"): _group_remove,
    ("group", "members"): _group_members,
    ("profile", "list"): _profile_list,
}
