"""Users' servers cannot reach each other nor the host (issue 12, item 4), tried for real.

Real daemons, Docker, image and kernels: code runs in alice's kernel over the proxy's
WebSocket and opens TCP connections to bob's container, to a listener bob's kernel opens,
to the daemon's own port and to listeners this test opens on the host.  Every address
probed is this machine's own or a container these tests started; nothing leaves it.

* the isolated layout (the default): all of those fail, the ports in
  ``docker.host_access`` stay reachable, and both routing modes still proxy;
* the legacy layout (``docker.network = ""``) is the control: the same probes succeed
  there, so the assertions above can fail.  Restarting that daemon isolated moves the
  running servers onto the users' network without stopping them (the same kernel answers),
  and switching ``egress`` to "deny" recreates the network with no route out.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys

import pytest
import pytest_twisted
import requests

from ipydoc.backends.docker_network import teardown_commands

from kernel_client import connect, execute, start_kernel
from support import docker, follow_progress, login, plant_firewall_chain

PW = "isolation-pw-1"

PROBE = '''
import errno as _errno, socket as _socket
def _probe(host, port):
    s = _socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, port))
        return "open"
    except _socket.timeout:
        return "timeout"
    except OSError as e:
        return _errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
def _listen():
    global _l
    _l = _socket.socket()
    _l.bind(("0.0.0.0", 0))
    _l.listen(8)
    return _l.getsockname()[1]
'''


class Kernel:
    """A user's kernel reached through the daemon's proxy (path mode)."""

    def __init__(self, base: str, user: str, session: requests.Session, kernel_id: str) -> None:
        self.base, self.user, self.session, self.id = base, user, session, kernel_id
        self.ws = connect(session, base, user, kernel_id)

    def run(self, code: str) -> str:
        return execute(self.ws, code)["text/plain"]

    def probe(self, host: str, port: int) -> str:
        return self.run(f"_probe({host!r}, {port})").strip("'")

    def reconnect(self) -> None:
        self.close()
        self.ws = connect(self.session, self.base, self.user, self.id)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - the daemon may be gone already
            pass


def start_user(d, name: str) -> Kernel:
    d.add_user(name, PW)
    session, r = login(d.url, name, PW)
    assert r.status_code == 303, r.text
    steps = follow_progress(session, d.url, name)
    assert steps[-1]["phase"] == "ready", steps
    k = Kernel(d.url, name, session, start_kernel(session, d.url, name))
    assert k.run("6*7") == "42"  # through the proxy, path mode
    k.run(PROBE + "\n0")
    return k


def container(d, name: str) -> dict:
    ids = d.containers(name, all=False)
    assert len(ids) == 1, ids
    return json.loads(docker("inspect", ids[0]))[0]


def address_on(info: dict, network: str) -> str:
    return info["NetworkSettings"]["Networks"][network]["IPAddress"]


def gateway(network: str) -> str:
    """The host's address on a Docker bridge network (read from its interface: the
    default bridge's inspect may name no gateway)."""
    from ipydoc.backends.docker_network import bridge_interface

    net = json.loads(docker("network", "inspect", network))[0]
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge_interface(net)],
                         capture_output=True, text=True, check=True).stdout
    return out.split(" inet ")[1].split("/")[0]


class HostListener:
    """A TCP listener on all of this host's addresses (the handshake is the kernel's)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]


class Outside:
    """A stand-in for "the internet" that is still this machine: a network namespace
    behind a veth pair, routed by the host like any outside address, with a listener.
    Docker's isolation chains do not cover it (it is no Docker network), so only the
    users' network's ``egress`` decides whether a server reaches it."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.ns, self.host_if, self.ns_if = f"isoout{tag}", f"vh{tag}", f"vn{tag}"
        octet = 16 + secrets.randbelow(200)
        self.address, gw = f"10.213.{octet}.2", f"10.213.{octet}.1"
        self.port = 8765
        ip = ["ip", "netns", "exec", self.ns, "ip"]
        for argv in (["ip", "netns", "add", self.ns],
                     ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if],
                     ["ip", "link", "set", self.ns_if, "netns", self.ns],
                     ["ip", "addr", "add", f"{gw}/30", "dev", self.host_if],
                     ["ip", "link", "set", self.host_if, "up"],
                     ip + ["addr", "add", f"{self.address}/30", "dev", self.ns_if],
                     ip + ["link", "set", self.ns_if, "up"],
                     ip + ["route", "add", "default", "via", gw]):
            subprocess.run(argv, check=True, capture_output=True)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c",
             "import socket, time; s = socket.socket(); s.bind(('0.0.0.0', %d)); "
             "s.listen(64); print('up', flush=True); time.sleep(3600)" % self.port],
            stdout=subprocess.PIPE)
        assert self.proc.stdout.readline().strip() == b"up"
        with socket.create_connection((self.address, self.port), timeout=5):
            pass  # reachable from the host itself

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        subprocess.run(["ip", "netns", "delete", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.host_if], capture_output=True)


@pytest.fixture(scope="module")
def outside():
    o = Outside()
    yield o
    o.close()


@pytest.fixture(scope="module")
def host_ports():
    blocked, allowed = HostListener(), HostListener()
    yield blocked.port, allowed.port
    blocked.sock.close()
    allowed.sock.close()


def new_daemon(tmp_path_factory, tag: str, **overrides):
    """A daemon (not started) listening on all interfaces; callers ask for the
    ``notebook_image`` fixture, which fails clearly when the test image is missing."""
    from support import Daemon

    d = Daemon(tmp_path_factory.mktemp(tag), overrides)
    # all interfaces: the daemon's own port is then on the bridge gateway too, a target
    d.overrides.setdefault("server", {})["listen"] = [f"tcp:{d.port}"]
    return d


# -- configuration (no daemon) ----------------------------------------------------------
@pytest.mark.parametrize("docker_section, message", [
    ({"network": "bridge"}, "docker.network = 'bridge' is one of Docker's own networks"),
    ({"network": "host"}, "docker.network = 'host' is one of Docker's own networks"),
    ({"network": "a b"}, "docker.network must be a Docker network name"),
    ({"egress": "open"}, "docker.egress must be 'allow' or 'deny'"),
    ({"host_access": [70000]}, "docker.host_access: 70000 is not a TCP port"),
    ({"host_access": ["22"]}, "docker.host_access must be a list of whole numbers"),
    ({"network": "", "egress": "deny"}, "docker.egress and docker.host_access need docker.network"),
])
def test_bad_isolation_settings_name_the_key(docker_section, message):
    from ipydoc.config.errors import ConfigError
    from ipydoc.config.load import from_dict

    with pytest.raises(ConfigError, match=message):
        from_dict({"docker": docker_section})


def test_isolation_is_on_by_default_with_one_network_per_instance():
    from ipydoc.config.load import from_dict

    d = from_dict({"docker": {"instance": "blue"}}).docker
    assert (d.network_name, d.egress, d.host_access) == ("blue-users", "allow", [])
    assert from_dict({}).docker.network_name == "ipydoc-users"


def alice_and_bob(d):
    """Start ``d`` and alice's and bob's servers with a kernel each; (d, kernels) until the
    fixture ends, then everything is stopped and removed."""
    d.start()
    kernels = {}
    try:
        kernels["alice"] = start_user(d, "alice")
        kernels["bob"] = start_user(d, "bob")
        yield d, kernels
    finally:
        for k in kernels.values():
            k.close()
        d.stop()
        d.cleanup_docker()


# -- the isolated layout ----------------------------------------------------------------
#: A bridge that no longer exists, whose host rules a daemon left behind.
STALE = "ipyd-stale0"


@pytest.fixture(scope="module")
def isolated(tmp_path_factory, host_ports, notebook_image):
    plant_firewall_chain(STALE)  # as a network removed while no daemon ran leaves them
    try:
        yield from alice_and_bob(new_daemon(tmp_path_factory, "iso",
                                            docker={"host_access": [host_ports[1]]}))
    finally:
        for argv in teardown_commands(STALE):
            subprocess.run(argv, capture_output=True)


def test_servers_are_on_the_users_network_with_nothing_published(isolated):
    d, _ = isolated
    net = json.loads(docker("network", "inspect", f"{d.instance}-users"))[0]
    assert net["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    assert net["Internal"] is False  # egress "allow", the default
    for name in ("alice", "bob"):
        info = container(d, name)
        assert list(info["NetworkSettings"]["Networks"]) == [f"{d.instance}-users"]
        assert not any(info["NetworkSettings"]["Ports"].values())
    assert "host firewall for br-" in d.log()


def test_rules_of_bridges_gone_before_the_start_are_removed(isolated):
    d, _ = isolated
    bridge = "br-" + json.loads(docker("network", "inspect", f"{d.instance}-users"))[0]["Id"][:12]
    for tool in ("iptables", "ip6tables"):
        rules = subprocess.run([tool, "-w", "-S"], capture_output=True, text=True,
                               check=True).stdout
        assert f"IPYDOC-{STALE}" not in rules
        assert f"-A INPUT -i {bridge} -j IPYDOC-{bridge}" in rules  # its own, installed
    assert f"IPv4 {STALE}" in d.log() and f"IPv6 {STALE}" in d.log()


def test_alice_cannot_reach_bob_nor_the_host(isolated, host_ports, outside):
    d, k = isolated
    alice, bob = k["alice"], k["bob"]
    blocked, allowed = host_ports
    bob_ip = address_on(container(d, "bob"), f"{d.instance}-users")
    bob_port = int(bob.run("_listen()"))
    gw = gateway(f"{d.instance}-users")
    # the probe itself works: alice reaches a listener in her own container
    own = int(alice.run("_listen()"))
    assert alice.probe("127.0.0.1", own) == "open"
    assert bob.run("6*7") == "42"  # the daemon reaches bob's server

    # dropped by Docker (enable_icc=false): the connection times out
    assert alice.probe(bob_ip, 8888) == "timeout"          # bob's Jupyter server
    assert alice.probe(bob_ip, bob_port) == "timeout"      # anything bob runs
    # refused by the host firewall (REJECT with a TCP reset)
    assert alice.probe(gw, d.port) == "ECONNREFUSED"       # the daemon, on the gateway
    assert alice.probe(gw, blocked) == "ECONNREFUSED"      # any host service
    docker0 = gateway("bridge")                            # another address of this host
    assert alice.probe(docker0, blocked) == "ECONNREFUSED"
    assert alice.probe(docker0, d.port) == "ECONNREFUSED"
    # docker.host_access: that port, and only it, is open on the host
    assert alice.probe(gw, allowed) == "open"
    assert alice.probe(docker0, allowed) == "open"      # egress allow: routed to the host
    assert alice.probe(outside.address, outside.port) == "open"  # egress "allow"
    # bob is still served, and alice's kernel still runs
    assert alice.run("6*7") == "42"


# -- the legacy layout is the control; moving its servers without stopping them ----------
@pytest.fixture(scope="module")
def legacy(tmp_path_factory, host_ports, notebook_image):
    yield from alice_and_bob(new_daemon(tmp_path_factory, "legacy", docker={"network": ""}))


def test_legacy_layout_lets_alice_reach_bob_and_the_host(legacy, host_ports):
    """The control: the same probes succeed without isolation."""
    d, k = legacy
    alice, bob = k["alice"], k["bob"]
    bob_ip = address_on(container(d, "bob"), "bridge")
    bob_port = int(bob.run("_listen()"))
    docker0 = gateway("bridge")
    assert alice.probe(bob_ip, 8888) == "open"
    assert alice.probe(bob_ip, bob_port) == "open"
    assert alice.probe(docker0, d.port) == "open"
    assert alice.probe(docker0, host_ports[0]) == "open"
    assert "NOT isolated" in d.log()


def test_restart_isolated_moves_running_servers_without_stopping_them(legacy, host_ports):
    d, k = legacy
    alice, bob = k["alice"], k["bob"]
    before = {n: container(d, n)["Id"] for n in ("alice", "bob")}
    d.stop()
    del d.overrides["docker"]["network"]  # back to the default: isolated
    d.start()
    net = f"{d.instance}-users"
    for name in ("alice", "bob"):
        info = container(d, name)
        assert info["Id"] == before[name]  # the same container, still running
        assert list(info["NetworkSettings"]["Networks"]) == [net]
        # Docker carries the loopback port it was created with over (until its next start)
        assert all(b["HostIp"] == "127.0.0.1"
                   for bs in info["NetworkSettings"]["Ports"].values() if bs for b in bs)
    assert "moved the running server of alice" in d.log()
    for kernel in (alice, bob):
        kernel.reconnect()
        # the same kernel (its _probe is still defined), routed at the new address
        assert kernel.run("6*7") == "42"
    bob_ip = address_on(container(d, "bob"), net)
    bob_port = int(bob.run("_listen()"))
    assert alice.probe(bob_ip, 8888) == "timeout"
    assert alice.probe(bob_ip, bob_port) == "timeout"
    assert alice.probe(gateway(net), d.port) == "ECONNREFUSED"
    assert alice.probe(gateway("bridge"), host_ports[0]) == "ECONNREFUSED"


def test_egress_deny_recreates_the_network_with_no_way_out(legacy, host_ports, outside):
    d, k = legacy
    alice = k["alice"]
    d.stop()
    d.overrides["docker"].update(egress="deny", host_access=[host_ports[1]])
    d.start()
    net = f"{d.instance}-users"
    inspected = json.loads(docker("network", "inspect", net))[0]
    assert inspected["Internal"] is True
    assert "recreating it" in d.log()
    alice.reconnect()
    assert alice.run("6*7") == "42"  # still the same kernel, still proxied
    # reachable with egress "allow" (test above), dropped now
    assert alice.probe(outside.address, outside.port) == "timeout"
    assert alice.probe(gateway(net), host_ports[1]) == "open"  # host_access still works
    assert alice.probe(gateway(net), host_ports[0]) == "ECONNREFUSED"


# -- subdomain mode ---------------------------------------------------------------------
def test_subdomain_mode_proxies_to_the_isolated_server(tmp_path_factory, notebook_image):
    import websocket

    from subdomain_support import DOMAIN, Browser, hand_off, wait_running
    from subdomain_support import login as hub_login

    d = new_daemon(tmp_path_factory, "isosub",
                   server={"routing": "subdomain", "domain": DOMAIN})
    d.start(host=f"{DOMAIN}:{d.port}")
    try:
        d.add_user("alice", PW)
        b = Browser(d.port)
        assert hub_login(b, "alice", PW).status_code == 303
        wait_running(b, "alice")
        info = container(d, "alice")
        assert not any(info["NetworkSettings"]["Ports"].values())
        assert b.go(hand_off(b, "alice")).status_code == 302
        host, origin = b.host("alice"), b.origin("alice")
        r = b.request("POST", host, "/api/kernels", json={"name": "python3"},
                      headers={"Origin": origin})
        assert r.status_code == 201, r.text
        cookie = "; ".join(f"{k}={v}" for k, v in b.jar[host].items())
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{d.port}/api/kernels/{r.json()['id']}/channels", host=host,
            cookie=cookie, origin=origin, timeout=60)
        try:
            assert execute(ws, "6*7")["text/plain"] == "42"
            execute(ws, PROBE + "\n0")
            gw = gateway(f"{d.instance}-users")
            assert execute(ws, f"_probe({gw!r}, {d.port})")["text/plain"] == "'ECONNREFUSED'"
        finally:
            ws.close()
    finally:
        d.stop()
        d.cleanup_docker()


# -- a network that does not isolate is refused -----------------------------------------
def test_a_foreign_network_that_lets_containers_talk_is_refused(tmp_path_factory, notebook_image):
    from support import remove_networks

    d = new_daemon(tmp_path_factory, "foreign")
    label = f"ipydoc.test-foreign={d.instance}"
    docker("network", "create", "--label", label, f"{d.instance}-users")
    try:
        d.start(wait=False)
        assert d.proc.wait(60) != 0
        log = d.log()
        assert f"the Docker network {d.instance}-users lets its containers reach each other" in log
        assert "ipydoc did not create it and leaves it alone" in log
        assert docker("network", "inspect", f"{d.instance}-users")  # left alone
    finally:
        d.stop()
        d.cleanup_docker()
        remove_networks(f"label={label}")


# -- a host firewall that cannot be installed is said loudly ------------------------------
@pytest_twisted.ensureDeferred
async def test_a_firewall_that_cannot_be_installed_is_logged_with_the_commands():
    from twisted.internet import reactor
    from twisted.logger import LogLevel, formatEvent, globalLogPublisher

    from ipydoc.backends.docker_network import HostFirewall

    calls: list[list[str]] = []

    def not_root(argv: list[str], stdin: str | None) -> tuple[int, str]:
        calls.append(argv)
        return 4, f"{argv[0]} v1.8.9 (nf_tables): Could not fetch rule set generation id: " \
                  "Permission denied (you must be root)"

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        ok = await HostFirewall(reactor, [5432], runner=not_root).install("br-0123456789ab")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert ok is False
    assert calls[0] == ["iptables-restore", "-w", "--noflush"]
    critical = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.critical]
    assert len(critical) == 1
    text = critical[0]
    assert "SECURITY" in text and "Permission denied" in text and "br-0123456789ab" in text
    # the rules to install by hand are in the message
    assert "-A IPYDOC-br-0123456789ab -p tcp --dport 5432 -j RETURN" in text
    assert "iptables -w -I INPUT 1 -i br-0123456789ab -j IPYDOC-br-0123456789ab" in text
