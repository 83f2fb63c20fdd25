"""``twistd ipydoc --config FILE``: builds the daemon as one ``MultiService``.

Children, started in this order (each waits for the one before it), stopped in reverse:

``redis``     connection pool (and the embedded redis-server child when no URL is set)
``network``   the users' network and host firewall (``docker.network``; not in legacy mode)
``servers``   the server manager over the backend: reconciles Redis, follows events
``activity``  writes proxy activity to Redis every few seconds
``history``   commits every save the proxy sees to the user's git history; pushes mirrors
``culler``    the idle culler (only when ``cull.idle_timeout`` or ``cull.max_age`` is set)
``metrics``   refreshes the snapshot gauges of /metrics from Redis and Docker (docs/metrics.md)
``web``       the public listener(s): hub pages and the user proxy on one Site; on stop it
              drains first (``server.drain_timeout``, ipydoc/edge/drain.py, docs/drain.md)
``metrics-listen`` the /metrics-only listener (``metrics.listen``; not by default)
``control``   the AMP control socket (0600) for the ``ipydoc`` CLI
``control-tls`` the same on TCP with TLS and client certificates (``control.listen_tls``)

Listening comes last, so no request is served before state is reconciled.  If a step
fails the daemon logs why and exits non-zero instead of serving half a service.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage

from ipydoc import __version__
from ipydoc.config.errors import ConfigError
from ipydoc.config.load import Config, find_config, load
from ipydoc.edge import reactor as lean_reactor


class Options(usage.Options):
    synopsis = "--config FILE"
    longdesc = ("Run ipydoc: the hub pages, the proxy to each user's Jupyter server, the "
                "server manager and the control socket, all in this one process. See "
                "etc/ipydoc.toml for every configuration key.")
    optParameters = [["config", "c", None,
                      "configuration file (default: $IPYDOC_CONFIG, /etc/ipydoc/ipydoc.toml, "
                      "./etc/ipydoc.toml)"]]

    def postOptions(self) -> None:
        try:
            self.cfg = load(find_config(self["config"]))
        except ConfigError as e:
            # A clear one-line error, not twistd's usage dump: the file is wrong, not argv.
            raise SystemExit(f"ipydoc: configuration error: {e}") from None
        # Before anything imports the reactor (twistd and the worker both parse these
        # options first); ``twistd --reactor NAME`` has installed its own already.
        lean_reactor.install()


class ListenService(Service):
    """Listen on an endpoint string once started; stop listening when stopped."""

    log = Logger()

    def __init__(self, name: str, endpoint: Any, factory: Any, describe: str) -> None:
        self.name = name
        self.endpoint = endpoint
        self.factory = factory
        self.describe = describe
        self.port: Any = None

    def startService(self) -> defer.Deferred[None]:
        super().startService()

        async def listen() -> None:
            self.port = await self.endpoint.listen(self.factory)
            self.log.info("{name} listening on {what}", name=self.name, what=self.describe)
        return defer.Deferred.fromCoroutine(listen())

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()


class WebService(MultiService):
    """The public listeners.  On stop: stop listening, drain the site for up to
    ``drain_timeout`` seconds (ipydoc.edge.drain), then close the proxy's pooled backend
    connections; the services started before it (history, servers, Redis) stop after."""

    def __init__(self, site: Any, reactor: Any, drain_timeout: float = 0.0) -> None:
        super().__init__()
        self.site = site
        self.reactor = reactor
        self.drain_timeout = drain_timeout

    def stopService(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        from ipydoc.edge.drain import drain

        # Every answer from now on is its connection's last (ipydoc.edge.drain); the site
        # keeps its logs open until the last connection is gone.
        self.site.connections.draining = self.drain_timeout > 0
        await defer.maybeDeferred(super().stopService)  # every listener stops accepting
        try:
            await drain(self.site.connections, self.site.proxy.exchanges, self.reactor,
                        self.drain_timeout)
        finally:
            await self.site.proxy.close()


class IpydocDaemon(MultiService):
    log = Logger()

    def __init__(self, cfg: Config, reactor: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self.reactor = reactor
        self.started_at = time.time()
        self.ready: defer.Deferred[None] = defer.Deferred()
        self._build()

    def _build(self) -> None:
        from ipydoc.access.cookies import load_secret
        from ipydoc.access.gate import UserGate
        from ipydoc.access.login_limits import LimitSettings
        from ipydoc.access.return_hint import ReturnHints
        from ipydoc.access.sessions import Sessions
        from ipydoc.access.shares import ShareRule
        from ipydoc.access.user_hosts import HostSessions
        from ipydoc.auth.login_state import Limits as ProviderLimits
        from ipydoc.auth.registry import build as build_providers
        from ipydoc.backends.docker import DockerBackend
        from ipydoc.backends.docker_api import DockerAPI
        from ipydoc.backends.users_network import UserNetworkService, network_options
        from ipydoc.config.metrics import read_token
        from ipydoc.control.context import ControlContext
        from ipydoc.control.removal import Removal
        from ipydoc.control.server import ControlFactory
        from ipydoc.edge.certificates import CertificateError
        from ipydoc.edge.forwarding import Forwarding
        from ipydoc.edge.inherited_sockets import control_spec, listen_endpoint
        from ipydoc.edge.limits import RequestLimits
        from ipydoc.edge.listeners import edge_listeners
        from ipydoc.edge.routing import Routing
        from ipydoc.edge.scheduling import BusyScheduling
        from ipydoc.edge.site import make_site
        from ipydoc.servers.activity import Activity
        from ipydoc.servers.manager import Limits, ServerManager
        from ipydoc.servers.prestart import LoginPagePrestart
        from ipydoc.servers.profiles import Catalogue
        from ipydoc.state.redis_service import RedisService, redis_url, secret_fingerprint
        from ipydoc.web.hub import make_hub
        from ipydoc.web.metrics_page import MetricsSite
        from ipydoc.web.pages import HubSettings

        cfg, reactor = self.cfg, self.reactor
        state = cfg.state_path
        state.mkdir(parents=True, exist_ok=True)
        os.chmod(state, 0o750)

        secret = load_secret(state / "secret")  # its fingerprint is checked in Redis
        self.redis = RedisService(redis_url(cfg.redis.url), state, reactor, cfg.redis.command,
                                  fingerprint=secret_fingerprint(secret))
        self.redis.setServiceParent(self)

        d = cfg.docker
        if cfg.spawn.backend == "swarm":
            self.backend = self._swarm_backend()
        else:
            api = DockerAPI(reactor, d.host or None)
            self.backend = DockerBackend(
                reactor, api, notebook_dir=d.notebook_dir,
                cmd=d.cmd, volume_prefix=d.volume_prefix, storage=d.storage,
                bind_root=d.bind_root or None, stop_timeout=d.stop_timeout,
                name_prefix=f"{d.instance}-", extra_labels={"ipydoc.instance": d.instance},
                **network_options(reactor, api, d.network_name, d.egress, d.host_access))
            if self.backend.isolate:  # before the manager: it adopts servers at their new address
                UserNetworkService(self.backend, reactor).setServiceParent(self)
        limits = Limits(cfg.spawn.image, cfg.mem_limit_bytes, cfg.spawn.cpu_limit or None,
                        cfg.spawn.pids_limit or None, cfg.spawn.start_timeout,
                        concurrency=cfg.spawn.concurrency, max_running=cfg.spawn.max_running,
                        max_named=cfg.spawn.max_named_servers,
                        images=tuple(cfg.spawn.images),
                        catalogue=Catalogue.build(cfg.profiles, cfg.groups))
        routing = Routing(cfg.server.routing, cfg.server.domain.lower(), cfg.server.public_url)
        self.manager = ServerManager(self.backend, self.redis, limits, reactor, routing=routing,
                                     lease_ttl=cfg.cluster.lease_ttl)
        self.manager.setServiceParent(self)

        sessions = Sessions(self.redis, load_secret(state / "secret"), cfg.auth.session_lifetime)
        self.activity = Activity()
        activity = TimerService(5.0, self._flush_activity)
        activity.setName("activity")
        activity.setServiceParent(self)

        self.history = None
        if cfg.history.enabled:
            from ipydoc.history.service import History
            self.history = History(cfg.history, state, self.redis, self.manager, reactor,
                                   secret=secret, lease_ttl=cfg.cluster.lease_ttl,
                                   sweep_interval=cfg.cluster.sweep_interval)
            self.history.setServiceParent(self)
        shares = ShareRule(self.redis)  # guests: on every request, and at a host's sign-in
        hosts = HostSessions(self.redis, load_secret(state / "secret"),
                             guest_may_enter=shares.may_enter)
        self.static_cache = self._static_cache(cfg, limits, reactor)
        self.gate = UserGate(sessions, self.manager, routing, hosts, self.activity,
                             saves=self.history, public_url=cfg.server.public_url,
                             static=self.static_cache, start_wait=cfg.spawn.start_wait,
                             shares=shares)

        from ipydoc.servers.culler import Culler, CullSettings
        cull = CullSettings(cfg.cull.idle_timeout, cfg.cull.max_age, cfg.cull.interval,
                            cfg.cull.ignore_kernel_activity, cfg.cull.exempt_admins,
                            cfg.cull.pause_after)
        self.culler = (Culler(self.manager, self.activity.last, cull, reactor,
                              lease_ttl=cfg.cluster.lease_ttl,
                              requests_under_way=self.gate.exchanges.requests)
                       if cull.enabled else None)
        if self.culler is not None:
            self.culler.setServiceParent(self)
        self._metrics_refresher(cfg.metrics.per_user).setServiceParent(self)

        # Account removal: the control channel's and the REST API's (DELETE /users/NAME)
        self.removal = Removal(self.redis, self.backend, self.history, reactor, state,
                               mirror=cfg.history.remote, git=cfg.history.git)
        # A login that would not start the server does not have the login page start it.
        prestart_on_login = cfg.spawn.prestart_on_login and cfg.auth.start_on_login
        hub = make_hub(
            sessions=sessions, manager=self.manager, gate=self.gate, routing=routing,
            hosts=hosts, history=self.history, stats=self.backend.stats,
            settings=HubSettings(
                image=cfg.spawn.image, stop_on_logout=cfg.auth.stop_on_logout,
                start_on_login=cfg.auth.start_on_login,
                login_limits=LimitSettings.from_auth(cfg.auth),
                prestart_on_home=cfg.spawn.prestart_on_home),
            providers=build_providers(cfg.auth, reactor), local_login=cfg.auth.local,
            provider_limits=ProviderLimits.from_auth(cfg.auth), public_url=cfg.server.public_url,
            metrics_token=read_token(cfg.metrics.token_file) if cfg.metrics.token_file else None,
            static=self.static_cache, removal=self.removal,
            prestart=(LoginPagePrestart(self.manager, reactor, cfg.spawn.prestart_grace,
                                        self.activity.last) if prestart_on_login else None),
            hints=ReturnHints(secret) if prestart_on_login else None)
        site = make_site(hub.resource(), self.gate, reactor, limits=RequestLimits(
            header_timeout=cfg.server.client_header_timeout,
            body_timeout=cfg.server.client_body_timeout,
            idle_timeout=cfg.server.client_idle_timeout,
            send_timeout=cfg.server.client_send_timeout,
            max_header_size=cfg.server.max_header_size, max_headers=cfg.server.max_headers),
            connect_timeout=cfg.proxy.backend_connect_timeout,
            head_timeout=cfg.proxy.backend_response_timeout, access_log=cfg.server.access_log,
            forwarding=Forwarding.from_settings(cfg.server.trusted_proxies, cfg.server.public_url),
            front_end=cfg.proxy.front_end)
        web = WebService(site, reactor, cfg.server.drain_timeout)
        web.setName("web")
        try:  # TLS certificates are read here: a bad one stops the daemon before it listens
            listeners, tls_reloader = edge_listeners(cfg.server, site, reactor)
        except CertificateError as e:
            raise ConfigError(f"{cfg.path}: {e}") from None
        if tls_reloader is not None:
            tls_reloader.setServiceParent(web)
        for i, (spec, plain, factory) in enumerate(listeners):
            try:
                endpoint = listen_endpoint(reactor, plain)  # the supervisor's socket, if any
            except (IndexError, KeyError):  # a systemd: socket that was not passed to us
                raise ConfigError(
                    f"server.listen: {spec!r} names a socket systemd did not pass to this "
                    "process (LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES; start ipydoc "
                    "through its .socket unit, or listen on tcp:)"
                ) from None
            ListenService(f"web-{i}", endpoint, factory, spec).setServiceParent(web)
        web.setServiceParent(self)
        BusyScheduling(reactor, cfg.proxy.scheduling, cfg.proxy.busy_events).setServiceParent(self)
        if cfg.metrics.listen:  # its own small site: /metrics only (ipydoc.web.metrics_page)
            ListenService("metrics-listen", listen_endpoint(reactor, cfg.metrics.listen),
                          MetricsSite(), f"{cfg.metrics.listen} (metrics)").setServiceParent(self)

        context = ControlContext(
            reactor=reactor, state=self.redis, manager=self.manager, backend=self.backend,
            exchanges=self.gate, removal=self.removal, history=self.history,
            cull=self.culler.cull if self.culler is not None else None,
            started_at=self.started_at, config_path=cfg.path)
        sock = cfg.control_socket
        control = ListenService(
            "control", listen_endpoint(reactor, control_spec(sock)),
            ControlFactory(context), f"unix:{sock} (mode 0600)")
        control.setServiceParent(self)
        if cfg.control.listen_tls:
            self._control_tls(ControlFactory(context))

    def _metrics_refresher(self, per_user: bool) -> Service:
        """The snapshot gauges of /metrics, refreshed every few seconds (docs/metrics.md)."""
        from prometheus_client import disable_created_metrics

        from ipydoc.backends.metrics import docker_unreachable, probe_docker
        from ipydoc.history.metrics import refresh_history
        from ipydoc.servers.metrics import refresh_servers
        from ipydoc.servers.metrics_refresh import MetricsRefresher, Probe
        from ipydoc.state.metrics import probe_redis, redis_unreachable

        disable_created_metrics()  # no *_created series: clutter for Prometheus
        store = lambda: self.redis.store  # noqa: E731 - exists once Redis is up
        probes = [
            Probe("redis", lambda: probe_redis(store()), redis_unreachable),
            Probe("docker", lambda: probe_docker(self.backend.api.ping), docker_unreachable),
            Probe("servers", lambda: refresh_servers(store(), self.manager.queue, per_user)),
        ]
        if self.history is not None:
            probes.append(Probe("history", lambda: refresh_history(store(), per_user)))
        return MetricsRefresher(probes, self.reactor)

    def _static_cache(self, cfg: Any, limits: Any, reactor: Any) -> Any:
        """JupyterLab's static files per image (docs/cold_login.md); Docker backend only,
        read in the background from the start (a failure only costs the speed-up)."""
        if not cfg.spawn.static_cache or cfg.spawn.backend != "docker":
            return None
        from twisted.internet.defer import Deferred

        from ipydoc.backends.image_static import ImageStaticReader
        from ipydoc.servers.static_cache import StaticCache

        reader = ImageStaticReader(reactor, self.backend.api, instance=cfg.docker.instance)
        cache = StaticCache(reader)
        reactor.callWhenRunning(cache.refresh_soon, limits.allowed_images)
        reactor.addSystemEventTrigger("before", "shutdown",
                                      lambda: Deferred.fromCoroutine(reader.close()))
        return cache

    def _swarm_backend(self) -> Any:
        """``spawn.backend = "swarm"``: services on the swarm whose manager is
        ``docker.host`` (the users' network of the Docker backend does not apply)."""
        from ipydoc.backends.swarm import SwarmBackend
        from ipydoc.backends.swarm_api import SwarmAPI

        d, s = self.cfg.docker, self.cfg.swarm
        return SwarmBackend(
            self.reactor, SwarmAPI(self.reactor, d.host or None), lambda: self.redis.store,
            notebook_dir=d.notebook_dir, cmd=d.cmd, volume_prefix=d.volume_prefix,
            name_prefix=f"{d.instance}-", extra_labels={"ipydoc.instance": d.instance},
            stop_timeout=d.stop_timeout, start_timeout=self.cfg.spawn.start_timeout,
            placement=s.placement, pull=s.pull, volume_driver=s.volume_driver,
            volume_options=s.volume_options, node_engines=s.node_engines,
            task_poll=s.task_poll)

    def _control_tls(self, factory: Any) -> None:
        """The control channel on TCP with TLS; only client certificates from
        ``control.tls_client_ca`` get past the handshake (see ipydoc/control/tls.py)."""
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from ipydoc.control.tls import TLSFilesError, server_options
        from ipydoc.edge.inherited_sockets import listen_endpoint

        c = self.cfg.control
        try:
            options = server_options(c.tls_cert, c.tls_key, c.tls_client_ca)
        except TLSFilesError as e:
            raise ConfigError(f"{self.cfg.path}: {e}") from None
        ListenService(
            "control-tls", listen_endpoint(self.reactor, c.listen_tls),
            TLSMemoryBIOFactory(options, False, factory),
            f"{c.listen_tls} (TLS; client certificates signed by {c.tls_client_ca})",
        ).setServiceParent(self)

    def _flush_activity(self) -> defer.Deferred[None] | None:
        stamps = self.activity.take()
        if not stamps or self.redis.store is None:
            return None
        d = defer.Deferred.fromCoroutine(self.redis.store.record_activity(stamps))
        return d.addErrback(lambda f: self.log.failure("writing activity", f))

    def startService(self) -> None:
        Service.startService(self)
        d = defer.Deferred.fromCoroutine(self._start_in_order())
        d.addCallbacks(self.ready.callback, self._start_failed)

    async def _start_in_order(self) -> None:
        self.log.info("ipydoc {v} starting (config {path})", v=__version__, path=self.cfg.path)
        for child in list(self):
            await _start_tree(child)
        try:  # files of accounts an older ipydoc removed must not go to a new account
            await self.removal.reserve_orphans()
        except Exception:  # noqa: BLE001 - logged; not a reason to refuse to start
            self.log.failure("looking for files of removed accounts")
        settle_garbage_collector()
        self.log.info("ipydoc ready")

    def _start_failed(self, failure: Any) -> None:
        self.log.critical("ipydoc could not start: {why}", why=failure.getErrorMessage())
        self.log.failure("start failure detail", failure)
        self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        self.reactor.stop()

    def stopService(self) -> defer.Deferred[None]:
        Service.stopService(self)
        return defer.Deferred.fromCoroutine(self._stop_in_reverse())

    async def _stop_in_reverse(self) -> None:
        flushed = self._flush_activity()  # the last few seconds of activity are not lost
        if flushed is not None:
            await flushed
        for child in reversed(list(self)):
            if child.running:
                try:
                    await defer.maybeDeferred(child.stopService)
                except Exception:  # noqa: BLE001 - keep stopping the rest
                    self.log.failure("stopping {name}", name=child.name)
            if child.name == "web":  # drained: the activity of its last requests too
                flushed = self._flush_activity()
                if flushed is not None:
                    await flushed


def settle_garbage_collector() -> None:
    """Start-up objects (modules, config, the app) live as long as the daemon: freeze them
    so the cyclic collector stops re-scanning them, and collect the youngest generation
    less often.  A proxied request allocates a few hundred short-lived objects; with the
    defaults a full collection walked the whole heap every few thousand requests, which
    showed as 80 ms p99 spikes under load."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)


#: Allocations (minus frees) between two young-generation collections; default 700.
GC_GEN0_THRESHOLD = 20_000


async def _start_tree(service: IService) -> None:
    """Start a service; a plain MultiService's children one after another."""
    if isinstance(service, MultiService) and not isinstance(service, IpydocDaemon):
        Service.startService(service)
        for child in list(service):
            await _start_tree(child)
    else:
        await defer.maybeDeferred(service.startService)


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    try:
        return IpydocDaemon(options.cfg, reactor)
    except ConfigError as e:
        print(f"ipydoc: configuration error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as e:
        print(f"ipydoc: {e}", file=sys.stderr)
        raise SystemExit(1) from None
