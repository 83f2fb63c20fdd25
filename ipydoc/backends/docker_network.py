"""Keeping users' containers apart: the users' bridge network and the host firewall.

A user controls everything in their container, so every packet it sends is hostile.  On
Docker's default bridge a kernel can open TCP to every other user's server (Jupyter
listens on all interfaces) and to every service of the host.  Two things close that:

* **The users' network** (``docker.network``): a bridge network of its own with
  ``com.docker.network.bridge.enable_icc=false``, so Docker drops traffic from one of its
  containers to another (Docker's isolation chains already drop traffic to other Docker
  networks).  With ``docker.egress = "deny"`` it is ``internal``: no default route, no
  NAT, nothing leaves the bridge.  The daemon reaches each server at its address on this
  network, so nothing is published on any host interface.
* **The host firewall**: a container still reaches the host itself through the bridge
  (the gateway address, and every host address with egress on): the daemon's own
  listener, sshd, a Redis, the Docker API on TCP.  One chain per bridge interface,
  ``IPYDOC-<bridge>``, jumped to from ``INPUT`` for that interface only, lets replies
  through (``ESTABLISHED,RELATED``), the TCP ports of ``docker.host_access``, and rejects
  every other new connection.  Installed with ``iptables-restore --noflush``, so the
  chain is replaced in one transaction (never open for a moment), for IPv4 and IPv6.
  The daemon installs it at start and whenever the bridge changes; that needs
  ``CAP_NET_ADMIN`` on the engine's host (root, or the capability alone as
  ``etc/ipydoc.service`` grants it).  When it cannot, it logs the commands to run.

Both outlive the daemon on purpose: servers keep running (and stay isolated) across a
daemon restart.  :func:`teardown_commands` lists what removes the rules of a bridge.  A
chain whose bridge is gone (the network removed while no daemon ran, e.g. by ``docker
network prune``) matches nothing any more; the daemon removes such chains when it first
installs its own (:meth:`HostFirewall.sweep`), so none pile up over the years.
"""

from __future__ import annotations

import re
import socket
import subprocess
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

log = Logger()

ICC_OPTION = "com.docker.network.bridge.enable_icc"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
NETWORK_LABEL = "ipydoc.network"  # on networks ipydoc created (it may recreate those)
EGRESS = ("allow", "deny")
RUN_TIMEOUT = 30.0


def bridge_interface(net: dict) -> str:
    """The host interface of a bridge network (Docker names it ``br-`` + 12 of its id)."""
    name = (net.get("Options") or {}).get(BRIDGE_NAME_OPTION)
    return name or "br-" + str(net.get("Id", ""))[:12]


def chain_name(bridge: str) -> str:
    return f"IPYDOC-{bridge}"  # iptables allows 28 characters; a bridge name has at most 15


@dataclass(frozen=True)
class _Family:
    name: str
    iptables: str
    restore: str
    reject: str


FAMILIES = (
    _Family("IPv4", "iptables", "iptables-restore", "icmp-admin-prohibited"),
    _Family("IPv6", "ip6tables", "ip6tables-restore", "icmp6-adm-prohibited"),
)


def chain_rules(bridge: str, ports: Sequence[int], family: _Family = FAMILIES[0]) -> str:
    """``iptables-restore --noflush`` input that (re)defines the bridge's chain."""
    chain = chain_name(bridge)
    lines = ["*filter", f":{chain} - [0:0]",
             f"-A {chain} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN"]
    lines += [f"-A {chain} -p tcp --dport {int(p)} -j RETURN" for p in ports]
    lines += [f"-A {chain} -p tcp -j REJECT --reject-with tcp-reset",
              f"-A {chain} -j REJECT --reject-with {family.reject}", "COMMIT", ""]
    return "\n".join(lines)


def jump_rule(bridge: str) -> list[str]:
    return ["INPUT", "-i", bridge, "-j", chain_name(bridge)]


def install_commands(bridge: str, ports: Sequence[int]) -> list[str]:
    """What an operator runs by hand when the daemon cannot (shown in the log)."""
    out = []
    for f in FAMILIES:
        rules = chain_rules(bridge, ports, f).strip().replace("\n", "\\n")
        out.append(f"printf '{rules}\\n' | {f.restore} -w --noflush")
        out.append(f"{f.iptables} -w -C {' '.join(jump_rule(bridge))} || "
                   f"{f.iptables} -w -I {' '.join(jump_rule(bridge)[:1])} 1 "
                   f"{' '.join(jump_rule(bridge)[1:])}")
    return out


def teardown_commands(bridge: str, families: Sequence[_Family] = FAMILIES) -> list[list[str]]:
    """Commands that remove the rules of ``bridge`` (after its network is removed)."""
    out = []
    for f in families:
        out += [[f.iptables, "-w", "-D", *jump_rule(bridge)],
                [f.iptables, "-w", "-F", chain_name(bridge)],
                [f.iptables, "-w", "-X", chain_name(bridge)]]
    return out


Runner = Callable[[list[str], str | None], tuple[int, str]]


def run_command(argv: list[str], stdin: str | None = None) -> tuple[int, str]:
    """(exit status, output) of a command: its stdout when it succeeded (a listing),
    else what it said on stderr; a missing program is status 127."""
    try:
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                           timeout=RUN_TIMEOUT, check=False)
    except FileNotFoundError:
        return 127, f"{argv[0]}: command not found"
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]}: no answer within {RUN_TIMEOUT:g} s"
    if p.returncode == 0:
        return 0, p.stdout.strip()
    return p.returncode, (p.stderr or p.stdout).strip()


class HostFirewall:
    """Installs the per-bridge ``INPUT`` chain; the commands run in the reactor's thread
    pool (they wait on the xtables lock, which dockerd holds while it changes rules)."""

    def __init__(self, reactor: Any, ports: Sequence[int] = (),
                 runner: Runner = run_command) -> None:
        self.reactor = reactor
        self.ports = tuple(int(p) for p in ports)
        self._runner = runner

    async def _run(self, argv: list[str], stdin: str | None = None) -> tuple[int, str]:
        return await deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                       self._runner, argv, stdin)

    async def install(self, bridge: str) -> bool:
        """Install (or replace) the rules for ``bridge``; False, logged, if IPv4 failed.

        IPv6 failing is only a warning: Docker turns IPv6 off inside containers of a
        network without it, so the IPv4 rules are the ones that matter."""
        ok = True
        for f in FAMILIES:
            why = await self._install_family(bridge, f)
            if why is None:
                continue
            if f is FAMILIES[0]:
                ok = False
                log.critical(
                    "SECURITY: could not install the host firewall for the users' bridge "
                    "{bridge}: {why}.  Users' containers can connect to every service "
                    "listening on this host's addresses.  Give ipydoc CAP_NET_ADMIN on the "
                    "Docker host (etc/ipydoc.service does), or install the rules as root:"
                    "\n{commands}",
                    bridge=bridge, why=why,
                    commands="\n".join(install_commands(bridge, self.ports)))
            else:
                log.warn("could not install the {family} host firewall for {bridge}: {why}",
                         family=f.name, bridge=bridge, why=why)
        if ok:
            log.info("host firewall for {bridge}: new connections from users' containers "
                     "to this host rejected{allowed}", bridge=bridge,
                     allowed=(" except TCP ports " + ", ".join(map(str, self.ports)))
                     if self.ports else "")
        return ok

    async def _install_family(self, bridge: str, f: _Family) -> str | None:
        code, err = await self._run([f.restore, "-w", "--noflush"], chain_rules(bridge, self.ports, f))
        if code != 0:
            return f"{f.restore} failed ({code}): {err}"
        code, _ = await self._run([f.iptables, "-w", "-C", *jump_rule(bridge)])
        if code == 0:
            return None
        code, err = await self._run([f.iptables, "-w", "-I", "INPUT", "1", *jump_rule(bridge)[1:]])
        if code != 0:
            return f"{f.iptables} -I INPUT failed ({code}): {err}"
        return None

    async def remove(self, bridge: str) -> None:
        """Drop the rules of a bridge that is going away; absent rules are fine."""
        for argv in teardown_commands(bridge):
            await self._run(argv)

    async def sweep(self) -> list[str]:
        """Remove the chains (and their ``INPUT`` jumps) of bridges that no longer exist on
        this host; the bridges whose rules went, per family (``"IPv6 br-…"``).

        Such a chain is left when a network goes while no daemon runs; it matches no
        packet, so removing it changes nothing but the clutter.  Only chains named as
        ours, for an interface absent from this network namespace (where the rules are),
        are touched: another instance's bridge exists, so its rules stay."""
        present = {name for _, name in socket.if_nameindex()}
        removed = []
        for f in FAMILIES:
            code, out = await self._run([f.iptables, "-w", "-S"])
            if code != 0:
                continue  # not allowed or not installed: install() says so
            for bridge in _our_chains(out):
                if bridge in present:
                    continue
                for argv in teardown_commands(bridge, [f]):
                    await self._run(argv)
                removed.append(f"{f.name} {bridge}")
        if removed:
            log.info("removed the host firewall rules of bridges that no longer exist: "
                     "{removed}", removed=", ".join(removed))
        return removed


#: ``-N IPYDOC-<interface>`` in ``iptables -S``; an interface name has at most 15 of
#: these characters (as the kernel allows them, without "/" and blanks).
_OUR_CHAIN = re.compile(r"^-N IPYDOC-([A-Za-z0-9_.:@+-]{1,15})$", re.MULTILINE)


def _our_chains(listing: str) -> list[str]:
    """The bridges named by our chains in an ``iptables -S`` listing."""
    return _OUR_CHAIN.findall(listing)
