"""The ``jupyter_server`` options every backend passes, whatever image or process runs it.

``tornado_settings.hub_prefix`` puts JupyterLab in hub mode: it leaves the server token
out of the page it sends (otherwise ``page_config.token`` would hand the browser a
credential that bypasses the proxy) and shows "Hub Control Panel" and "Log Out" menu
entries pointing at ``/hub/`` (on ``hub_host``, the hub's origin, in subdomain mode).
The token itself only ever travels in ``JUPYTER_TOKEN``.
"""

from __future__ import annotations

import json

from ipydoc.backends.base import ServerSpec
from ipydoc.names import split_server_key


def server_args(spec: ServerSpec, *, port: int, root_dir: str, ip: str = "0.0.0.0") -> list[str]:
    owner, server = split_server_key(spec.name)  # a named server's base_url names it
    hub = {"hub_prefix": "/hub/", "hub_host": spec.hub_host, "user": owner}
    if server:
        hub["server_name"] = server
    return [
        f"--ServerApp.ip={ip}",
        f"--ServerApp.port={port}",
        f"--ServerApp.base_url={spec.base_url}",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.trust_xheaders=True",
        "--ServerApp.allow_remote_access=True",
        "--ServerApp.quit_button=False",
        f"--ServerApp.tornado_settings={json.dumps(hub, separators=(',', ':'))}",
        "--no-browser",
    ]
