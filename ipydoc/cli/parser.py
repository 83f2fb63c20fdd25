"""The ``ipydoc`` command line: every command, option and ``--help`` text."""

from __future__ import annotations

import argparse
from typing import Any

from ipydoc import __version__
from ipydoc.cli import groups, shares, tokens
from ipydoc.cli.errors import EXIT_CODES


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="ipydoc", formatter_class=fmt,
        description="Administer a running ipydoc daemon over its control channel, and build\n"
                    "notebook images. The daemon itself runs as "
                    "`ipydoc serve --config FILE` (or `twistd -n ipydoc --config FILE`).",
        epilog="The control socket is found from --control, else $IPYDOC_CONTROL, else the\n"
               "config file (--config, $IPYDOC_CONFIG, /etc/ipydoc/ipydoc.toml, "
               "./etc/ipydoc.toml).\n" + EXIT_CODES + "\n\n"
               "`ipydoc COMMAND --help` and `ipydoc COMMAND ACTION --help` describe each one.")
    p.add_argument("--config", "-c", metavar="FILE", help="the daemon's configuration file")
    p.add_argument("--control", metavar="TARGET",
                   help="the control channel: a socket PATH, or tls:HOST:PORT for "
                        "control.listen_tls (default: from the config, or $IPYDOC_CONTROL)")
    p.add_argument("--tls-cert", metavar="PEM",
                   help="client certificate for tls: (also $IPYDOC_TLS_CERT)")
    p.add_argument("--tls-key", metavar="PEM",
                   help="its private key, if not in --tls-cert's file (also $IPYDOC_TLS_KEY)")
    p.add_argument("--tls-ca", metavar="PEM",
                   help="CA certificate(s) to check the daemon's certificate against "
                        "(also $IPYDOC_TLS_CA)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--version", action="version", version=f"ipydoc {__version__}")

    # ``--json`` is also accepted after the command (``ipydoc user list --json``).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON instead of a table")
    sub = p.add_subparsers(dest="group", metavar="COMMAND", required=True)

    def group(name: str, help: str) -> Any:
        g = sub.add_parser(name, help=help, description=help)
        return g.add_subparsers(dest="action", metavar="ACTION", required=True)

    def cmd(parent: Any, name: str, help: str, description: str = "") -> argparse.ArgumentParser:
        return parent.add_parser(name, help=help, description=description or help,
                                 parents=[common], formatter_class=fmt)

    def name_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("name", help="user name")

    cmd(sub, "status", "daemon version, uptime, Docker and Redis health, counts",
        "Version, uptime, Docker and Redis health and counts. Exits 1 when the daemon "
        "answers but Docker or Redis does not.")

    q = sub.add_parser(
        "serve", help="run ipydoc (the daemon, under a supervisor that restarts it)",
        description="Run ipydoc in the foreground: a supervisor that binds the listening "
                    "sockets (server.listen, redirect_listen, the control socket, "
                    "control.listen_tls, metrics.listen), runs the embedded Redis when "
                    "redis.url is empty, and runs the daemon in a worker process on those "
                    "sockets. SIGHUP or SIGUSR2 (systemctl reload, `ipydoc restart`) starts "
                    "a new worker with the configuration and code read again, and retires "
                    "the old one once the new one is ready: no request fails. SIGTERM "
                    "stops it all. The same as `python -m ipydoc`; `twistd -n ipydoc` "
                    "still runs the daemon alone. See docs/upgrades.md.")
    q.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS,
                   help="the configuration file (also before `serve`; default: "
                        "$IPYDOC_CONFIG, /etc/ipydoc/ipydoc.toml, ./etc/ipydoc.toml)")
    q = cmd(sub, "restart", "replace the daemon's worker with no failed request (ipydoc serve)",
            "Ask the supervisor of `ipydoc serve` for a new worker (configuration, "
            "certificates and installed code read again), wait until it answers on the "
            "control socket and the old worker has finished its requests and exited, and "
            "print the pids and the time it took. If the new worker fails (e.g. a "
            "configuration error), the old one keeps serving and the reason is printed "
            "(exit 1). A daemon run by plain twistd cannot do this (exit 6).")
    q.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                   help="how long to wait for the new worker (default 300)")

    user = group("user", "manage accounts")
    q = cmd(user, "add", "create a local account",
            "Create a local account. The password (8 characters or more) is read from "
            "standard input with --password-stdin (its first line), otherwise asked for "
            "twice on the terminal. Names: lower-case letters, digits and single inner "
            "hyphens, starting with a letter, at most 32 characters.")
    q.add_argument("name", help="user name")
    q.add_argument("--admin", action="store_true", help="make the account an admin")
    q.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input")
    q = cmd(user, "remove", "delete an account (files kept and name reserved, unless --purge)",
            "Delete an account: logins are refused at once, its sessions end, its server "
            "stops and its records go. Its files (volume or directory) and history are "
            "kept, and the name stays reserved so that no new account (`user add`, a "
            "GitHub or OIDC login) can get them: `user purge NAME` deletes them and frees "
            "the name, `user restore NAME` brings the account back. --purge --yes deletes "
            "the files and history at once (the name is free afterwards).")
    name_arg(q)
    q.add_argument("--purge", action="store_true",
                   help="also delete the user's files and history repository")
    q.add_argument("--yes", action="store_true", help="confirm --purge (it cannot be undone)")
    q = cmd(user, "purge", "delete a removed account's files and history; free the name",
            "Delete what a removed account kept: its files (volume or directory), its "
            "history repository, queued saves and mirror state, and its login identity "
            "binding; then the name is free and a new account of it starts empty. Also "
            "cleans up leftovers of accounts removed by an older ipydoc. The mirror "
            "repository (history.remote) is on another server and is not deleted. Needs "
            "--yes.")
    name_arg(q)
    q.add_argument("--yes", action="store_true", help="confirm (it cannot be undone)")
    cmd(user, "removed", "removed accounts whose files are kept (their names are reserved)",
        "List the names reserved by `user remove` without --purge: when and by whom, where "
        "the files are, how many versions the history has. `user purge NAME --yes` frees "
        "one, `user restore NAME` brings the account back.")
    name_arg(cmd(user, "restore", "bring a removed account back with its files",
                 "Undo `user remove` without --purge: the same account comes back (its "
                 "password or GitHub/OIDC login, admin flag, files and history)."))
    cmd(user, "list", "list accounts and their server state")
    name_arg(cmd(user, "show", "one account: flags, server, last activity, sessions"))
    name_arg(cmd(user, "disable", "refuse logins, end all sessions, stop the server",
                 "Disable an account: logins are refused, every session ends, the server "
                 "stops. Files and the account stay; `user enable` undoes it."))
    name_arg(cmd(user, "enable", "allow a disabled account to log in again"))
    q = cmd(user, "set-admin", "grant admin rights (or withdraw them with --off)")
    name_arg(q)
    q.add_argument("--off", action="store_true", help="withdraw admin rights instead")
    q = cmd(user, "set-limits", "override a user's memory, CPU and process limits",
            "Give one user other limits than the [spawn] config: memory (e.g. 4G), CPUs "
            "(fractions allowed), processes; 0 means no limit. --reset drops the named "
            "overrides (mem, cpu, pids; or all) so the config applies again. Takes effect "
            "at the user's next server start.")
    name_arg(q)
    q.add_argument("--mem", metavar="SIZE", help="memory limit, binary units (512M, 2G; 0: none)")
    q.add_argument("--cpu", type=float, metavar="CPUS", help="CPU limit (0.5, 2; 0: none)")
    q.add_argument("--pids", type=int, metavar="N", help="process limit (0: none)")
    q.add_argument("--reset", action="append", default=[], metavar="WHICH",
                   choices=["mem", "cpu", "pids", "all"],
                   help="drop an override (repeatable): mem, cpu, pids or all")
    q = cmd(user, "passwd", "set a user's password (ends their sessions, revokes their API "
                            "tokens)",
            "Set a new password, read like `user add` reads it. Every session of the "
            "user ends and every personal API token of theirs is revoked (whoever had the "
            "old password may have made one), unless --keep-sessions.")
    name_arg(q)
    q.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input")
    q.add_argument("--keep-sessions", action="store_true",
                   help="do not log the user out everywhere nor revoke their API tokens")

    def server_arg(q: argparse.ArgumentParser, required: bool = False) -> argparse.ArgumentParser:
        q.add_argument("--server", metavar="SERVER", required=required, default="",
                       help="one of the user's named servers (/user/NAME/SERVER/); "
                            + ("required" if required else "default: the user's default "
                               "server"))
        return q

    server = group("server", "user servers")
    q = cmd(server, "start", "start a user's server and wait until it answers",
            "Start a user's server (as logging in does) and wait until Jupyter answers; "
            "exit 1 with the reason if it fails. --no-wait returns at once. With --server "
            "SERVER, the user's named server SERVER (made at its first start; at most "
            "spawn.max_named_servers per user, exit 2 beyond).")
    name_arg(server_arg(q))
    q.add_argument("--no-wait", action="store_true", help="do not wait for it to be ready")
    q.add_argument("--profile", metavar="NAME",
                   help="the profile to start (one the user may pick: `ipydoc profile list "
                        "--user NAME`); default: their last, else groups.default_profile")
    name_arg(server_arg(cmd(server, "stop", "stop a user's server (files are kept)",
                 "Stop a user's server: the container is stopped and removed, the files "
                 "stay. Stopping a server that is not running is not an error.")))
    name_arg(server_arg(cmd(server, "remove", "forget a stopped named server (files are kept)",
                 "Remove the user's stopped named server SERVER: its record goes (it no "
                 "longer counts in spawn.max_named_servers); the user's files, shared by "
                 "all their servers, stay. Refused (exit 1) while it runs."), required=True))
    name_arg(server_arg(cmd(server, "pause", "pause a user's server (memory and kernels kept)",
                 "Freeze a user's running server (docker pause): its memory and its "
                 "kernels' variables stay, it uses no CPU. Its first request resumes it "
                 "(the user sees nothing but a short wait). Pausing a server that is not "
                 "running, or already paused, is not an error.")))
    name_arg(server_arg(cmd(server, "resume", "resume a user's paused server",
                 "Thaw a paused server now (any request to it does the same). Resuming a "
                 "server that is not paused is not an error.")))
    q = cmd(server, "move", "move a user's files to another Swarm node (spawn.backend = swarm)",
            "Move NAME's files to NODE (a Swarm node's hostname or id): stop the server if "
            "it runs, copy the volume with helper tasks and verify it (bytes and sha256 at "
            "both ends), pin NAME to NODE, start the server there if it was running. If the "
            "copy fails NAME stays where they were. The old volume is kept on the old node "
            "(remove it there yourself once satisfied).")
    name_arg(q)
    q.add_argument("node", help="the target node: hostname or id (`docker node ls`)")
    cmd(server, "list", "servers: owner, state, server name, image, URL, start time, "
                        "last activity, error")
    name_arg(server_arg(cmd(server, "show", "one server: record, container, start progress")))
    q = cmd(server, "logs", "the last lines of a server's output (its container's logs)",
            "Print the last N lines of the container's stdout and stderr, interleaved. A "
            "stopped server's container is removed, and its output with it.")
    name_arg(server_arg(q))
    q.add_argument("-n", "--tail", type=int, default=100, metavar="N",
                   help="how many lines (default 100; 0: all)")

    route = group("route", "the proxy's routing table")
    cmd(route, "list", "routes: user, backend address, last activity",
        "The proxy's routes: each running user's server and where its traffic goes. "
        "SERVED: in the proxy's table; STORED: in Redis (they agree unless something is "
        "wrong).")

    session = group("session", "login sessions")
    q = cmd(session, "list", "live login sessions (of one user, or everyone's)")
    q.add_argument("name", nargs="?", help="only this user's sessions")
    q = cmd(session, "revoke", "end sessions: all of a user's, or one by its id",
            "End every session of NAME, or the one session whose id (from `session list`) "
            "starts with --id. The browser is logged out at its next request.")
    q.add_argument("name", nargs="?", help="end all of this user's sessions")
    q.add_argument("--id", metavar="SID", help="end the one session with this id (8+ digits)")

    cmd(sub, "cull", "stop idle servers now (runs the idle culler)",
        "Run the idle culler at once and list the servers it stopped. When the daemon has "
        "no idle culler configured this says so and exits 6.")

    q = cmd(sub, "events", "recent events; with -f, follow them live",
            "Print recent events (logins, refused logins, spawns, failed spawns, stops, "
            "admin changes), oldest first; with --follow keep printing new ones as they "
            "happen, until interrupted. With --json, one JSON object per line.")
    q.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    q.add_argument("-n", "--count", type=int, default=20, metavar="N",
                   help="how many past events to print first (default 20; 0: none)")
    q.add_argument("--user", metavar="NAME", help="only this user's events")
    q.add_argument("--kind", metavar="K[,K...]",
                   help="only these kinds, e.g. login,spawn,spawn-failed,stop")
    q.add_argument("--after", metavar="ID",
                   help="print the events after this event id (from an earlier --json "
                        "line) instead of the last N: resume where a script stopped")
    q.add_argument("--max", type=int, metavar="N",
                   help="with --follow: exit after N new events")
    q.add_argument("--for", dest="for_", type=float, metavar="SECONDS",
                   help="with --follow: stop following after SECONDS")

    history = group("history", "versions of users' files (every save is a git commit)")
    q = cmd(history, "list", "a user's versioned files, or the versions of one file",
            "Without PATH: every file in NAME's history with its number of versions, last "
            "change, and whether it still exists (a renamed file is listed under its new "
            "name, with the versions it had before); with --deleted only the files that "
            "no longer exist, with their last version and when they were deleted. With "
            "PATH: that file's versions, newest first (REV, time, what happened, the path "
            "it had then: versions follow the file through renames and moves).")
    name_arg(q)
    q.add_argument("path", nargs="?", help="a file path relative to the user's home")
    q.add_argument("--deleted", action="store_true",
                   help="only the deleted files, with the version `history restore` brings back")
    q = cmd(history, "restore", "write an old version of a file back (as a new save)",
            "Write version REV (from `history list NAME PATH`; 4+ hex digits) of PATH back "
            "to NAME's running server. It is saved as a new version: nothing is lost. "
            "Works across renames (the version is read at the path it had then and "
            "written to PATH) and for deleted files (`history list NAME --deleted`).")
    name_arg(q)
    q.add_argument("path", help="a file path relative to the user's home")
    q.add_argument("rev", help="the version (commit id or a unique prefix of 4+ digits)")
    q = cmd(history, "export", "write a user's whole history as a git bundle",
            "Write NAME's whole history (every version of every file) to FILE as a git "
            "bundle (`git bundle create --all`), fetched from the daemon in chunks, so it "
            "works over control.listen_tls too. Checked against the daemon's size and "
            "sha256 before FILE appears. `git clone FILE` gives a normal repository.")
    name_arg(q)
    q.add_argument("file", help="the bundle to write ('-': standard output)")
    q = cmd(history, "dead-letters", "changes of a user that could not be versioned",
            "Changes the history worker gave up on, newest first, with the reason: the "
            "user's server answered beyond a limit (too large, an encoding not asked for, "
            "too slow, not a contents model) or failed history.max_attempts times. The "
            "files themselves are untouched; the next save of a file versions it again.")
    name_arg(q)

    q = cmd(sub, "backup", "write one archive of the site's state (no daemon needed)",
            "Write FILE (.tar or .tar.gz): a Redis snapshot (redis-cli --rdb), every "
            "user's history repository (git bundles), the signing secret and the config "
            "file; with --volumes also every user's files (docker backend). Runs here, "
            "reading the same config as the daemon (--config); the daemon may keep "
            "running. Progress bars on a terminal. See docs/backup.md.")
    q.add_argument("file", help="the archive to write (.tar or .tar.gz)")
    q.add_argument("--volumes", action="store_true",
                   help="also archive each user's files (docker.volume_prefix volumes or "
                        "docker.bind_root directories), streamed through the Docker engine")
    q = cmd(sub, "restore", "bring a site back from a backup archive, into an empty state dir",
            "Restore FILE into the site of --config: server.state_dir must be empty (but "
            "for the config file), no daemon may run on it, and a redis.url Redis must "
            "hold no ipydoc:* key. Every member is checked against the archive's manifest "
            "(sha256) before anything is written. Then the secret, the histories and the "
            "Redis keys (users, tokens, sessions, ...) are put back; --volumes puts users' "
            "files back into new volumes. Start the daemon afterwards.")
    q.add_argument("file", help="the archive written by `ipydoc backup`")
    q.add_argument("--no-sessions", action="store_true",
                   help="leave login sessions out: everybody logs in again")
    q.add_argument("--volumes", action="store_true",
                   help="also restore users' files (the volumes must not exist)")

    groups.add_parsers(group, cmd)
    shares.add_parsers(group, cmd)
    tokens.add_parsers(group, cmd)

    image = group("image", "notebook images")
    q = image.add_parser(
        "build", help="build a Jupyter image locally (no registry needed; needs root)",
        description="Build a Jupyter Docker Stacks-equivalent image (jupyter_server, "
                    "JupyterLab, ipykernel; user jovyan 1000:100) from Debian packages and "
                    "PyPI with debootstrap and `docker import`. For air-gapped sites and "
                    "machines that cannot reach a registry. With spawn.backend = swarm, "
                    "the image is then loaded onto every node in swarm.node_engines.")
    q.add_argument("--tag", help="image tag (default: spawn.image from the config)")
    q = image.add_parser(
        "ensure", help="make spawn.image available: present, else pull, else build",
        description="Make the configured image usable: nothing if it is there, else "
                    "`docker pull`, else build it locally (see `ipydoc image build`). With "
                    "spawn.backend = swarm, then load it onto every node listed in "
                    "swarm.node_engines that lacks it (by ID; no registry needed).")
    q.add_argument("--tag", help="image tag (default: spawn.image from the config)")
    return p
