"""``redis.url``: where Redis is, read once into a :class:`RedisTarget`.

Three forms:

* ``redis://[:PASSWORD@]HOST:PORT/DB`` -- one server over TCP;
* ``unix:///PATH?db=N`` (password as ``unix://:PASSWORD@/PATH``) -- one server on a socket;
* ``redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]`` -- the master of
  the Sentinel service ``SERVICE``, asked of the Sentinels listed before every connection,
  so a failover is followed when the connections drop (txredisapi's ``Sentinel``).  The
  password is the Redis servers'; the Sentinels themselves are asked without one.

No reactor and no txredisapi here: the configuration checker uses it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class RedisTarget:
    kind: str                      # tcp, unix, sentinel
    host: str = ""
    port: int = 6379
    path: str = ""
    db: int = 0
    password: str | None = None
    sentinels: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    service: str = ""

    def describe(self) -> str:
        """Where, without the password (for logs)."""
        if self.kind == "unix":
            return f"redis at unix://{self.path}"
        if self.kind == "sentinel":
            where = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"redis master {self.service!r} of the Sentinels {where} (db {self.db})"
        return f"redis at redis://{self.host}:{self.port}/{self.db}"


def parse(url: str) -> RedisTarget:
    """Read ``url``; ValueError says what is wrong with it."""
    u = urlsplit(url)
    if u.scheme == SENTINEL_SCHEME:
        return _sentinel(url)
    try:
        password = unquote(u.password) if u.password else None
        if u.scheme == "unix":
            if not u.path:
                raise ValueError("unix:///PATH names no socket")
            db = int(parse_qs(u.query).get("db", ["0"])[0])
            return RedisTarget("unix", path=u.path, db=db, password=password)
        if u.scheme == "redis":
            return RedisTarget("tcp", host=u.hostname or "localhost", port=u.port or 6379,
                               db=int(u.path.strip("/") or 0), password=password)
    except ValueError as e:
        raise ValueError(f"redis.url: {e}") from None
    raise ValueError("redis.url must be redis://HOST:PORT/DB, unix:///PATH?db=N or "
                     "redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]")


def _sentinel(url: str) -> RedisTarget:
    rest = url[len(SENTINEL_SCHEME) + 3:]
    netloc, _, path = rest.partition("/")
    password = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        password = unquote(userinfo.partition(":")[2]) or None
    sentinels = []
    for part in netloc.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"redis.url: the Sentinel {part!r} is not HOST:PORT")
        sentinels.append((host.strip("[]"), int(port)))
    service, _, db = path.strip("/").partition("/")
    if not service:
        raise ValueError("redis.url: redis+sentinel://HOSTS/SERVICE names no service")
    if db and not db.isdigit():
        raise ValueError(f"redis.url: the database {db!r} is not a number")
    return RedisTarget("sentinel", db=int(db or 0), password=password,
                       sentinels=tuple(sentinels), service=service)
