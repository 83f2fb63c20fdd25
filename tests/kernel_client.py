"""Run code in a Jupyter kernel over its WebSocket, as JupyterLab does (JSON protocol)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import requests
import websocket


def start_kernel(session: requests.Session, base: str, user: str) -> str:
    r = session.post(f"{base}/user/{user}/api/kernels", json={"name": "python3"},
                     headers={"Origin": base})
    assert r.status_code == 201, (r.status_code, r.text)
    return r.json()["id"]


def connect(session: requests.Session, base: str, user: str, kernel_id: str,
            origin: str | None = None) -> websocket.WebSocket:
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    url = base.replace("http", "ws", 1) + f"/user/{user}/api/kernels/{kernel_id}/channels"
    return websocket.create_connection(url, cookie=cookie, origin=origin or base, timeout=60)


def execute(ws: websocket.WebSocket, code: str) -> dict[str, Any]:
    """Send an execute_request; return the execute_result data (or raise on error)."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))
    result: dict[str, Any] = {}
    while True:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "execute_result":
            result = msg["content"]["data"]
        elif kind == "error":
            raise AssertionError(f"kernel error: {msg['content']}")
        elif kind == "status" and msg["content"]["execution_state"] == "idle" and result:
            return result
        elif kind == "execute_reply" and msg["content"]["status"] != "ok":
            raise AssertionError(f"execute failed: {msg['content']}")


def run_code(session: requests.Session, base: str, user: str, code: str) -> str:
    """``code`` run in a new kernel of ``user``'s server (``NAME`` or ``NAME/SERVER``)
    through the proxy's WebSocket: its ``text/plain`` result."""
    ws = connect(session, base, user, start_kernel(session, base, user))
    try:
        return execute(ws, code)["text/plain"]
    finally:
        ws.close()
