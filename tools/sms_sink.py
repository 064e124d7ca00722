"""A tiny real HTTP server standing in for the SMS gateway and WeCom group robots.

Used by the tests, the demo and the benchmark in place of the real outside
services. It speaks plain HTTP/1.1 (keep-alive, Content-Length or chunked bodies)
on ``asyncio.start_server``:

- ``POST /sms`` with ``{"id", "to", "text"}``: accepted (200), recorded once per
  ``id``; a repeated ``id`` is answered 200 and dropped, like a real gateway.
- ``POST /cgi-bin/webhook/send?key=K``: a WeCom group robot; answers
  ``{"errcode": 0, "errmsg": "ok"}`` and records the content.
- ``GET /messages``, ``GET /robot-messages``, ``GET /requests``, ``GET /healthz``.
- ``POST /control/fail`` ``{"count", "status"}``, ``POST /control/reject-robot``
  ``{"count", "errcode"}``, ``POST /control/delay`` ``{"seconds"}``,
  ``POST /control/reset``: the same knobs as the Python methods, for another process.

It can fail the next N requests with a status (:meth:`LocalSmsSink.fail_next`), be
slow (``delay_seconds``) or be down altogether (:meth:`LocalSmsSink.go_down`: the
port refuses connections). Run it alone with ``python -m tools.sms_sink --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shared.contracts.common import mask_phone

log = logging.getLogger("coffeetime.notify.sink")

MAX_BODY = 1 << 20
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
            411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _Request:
    __slots__ = ("method", "path", "query", "headers", "body")

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        parts = urlsplit(target)
        self.method = method
        self.path = parts.path
        self.query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """One HTTP/1.1 request, or None when the client closed the connection."""
    line = await reader.readline()
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    except ValueError:
        raise _BadRequest(400, "malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise _BadRequest(400, "HTTP/1.x only")
    headers: dict[str, str] = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        name, sep, value = h.decode("latin-1").partition(":")
        if not sep:
            raise _BadRequest(400, "malformed header")
        headers[name.strip().lower()] = value.strip()
        if len(headers) > 100:
            raise _BadRequest(400, "too many headers")
    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(await reader.readexactly(size))
            await reader.readline()
            if sum(map(len, chunks)) > MAX_BODY:
                raise _BadRequest(413, "body too large")
        body = b"".join(chunks)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise _BadRequest(413, "body too large")
        body = await reader.readexactly(length)
    return _Request(method.upper(), target, headers, body)


def _response(status: int, payload: Any, keep_alive: bool) -> bytes:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _now() -> str:
    return datetime.now(UTC).isoformat()


class LocalSmsSink:
    """A local SMS gateway and WeCom robot endpoint that records what it accepts.

    ``messages`` holds accepted SMS (one per id), ``robot_messages`` the robot posts,
    ``requests`` every POST with the status it got. Use as ``async with
    LocalSmsSink() as sink:``; ``sink.url`` is the SMS endpoint and
    ``sink.webhook_url(key)`` a robot URL.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.messages: list[dict[str, Any]] = []
        self.robot_messages: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.delay_seconds = 0.0
        self._fail_count = 0
        self._fail_status = 500
        self._robot_reject_count = 0
        self._robot_errcode = 93000
        self._robot_errmsg = "invalid webhook url"
        self._seen_ids: set[str] = set()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task] = set()
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()

    # --- life cycle -----------------------------------------------------------------

    async def start(self) -> LocalSmsSink:
        """Listen (on a free port when ``port`` is 0; the chosen port is kept for restarts)."""
        self._stopping.clear()
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            server = self._server
            server.close()
            self._server = None
            self._stopping.set()  # wakes requests held by delay_seconds
            for writer in list(self._connections):
                writer.transport.abort()
            self._connections.clear()
            # let the connection handlers see the abort and finish, so none is left to be cancelled
            handlers = [t for t in self._handlers if t is not asyncio.current_task()]
            if handlers:
                await asyncio.wait(handlers, timeout=5.0)
            await server.wait_closed()

    async def go_down(self) -> None:
        """Be down: the port refuses connections until :meth:`come_up`."""
        await self.stop()

    async def come_up(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            await self.start()

    @property
    def is_down(self) -> bool:
        return self._server is None

    async def __aenter__(self) -> LocalSmsSink:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The SMS gateway endpoint."""
        return f"{self.base_url}/sms"

    def webhook_url(self, key: str = "test") -> str:
        """A WeCom-style robot URL on this sink."""
        return f"{self.base_url}/cgi-bin/webhook/send?key={key}"

    # --- knobs ----------------------------------------------------------------------

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next ``count`` POSTs (SMS or robot) with HTTP ``status``, recording nothing."""
        self._fail_count = count
        self._fail_status = status

    def reject_next_robot(self, count: int, errcode: int = 93000, errmsg: str = "invalid webhook url") -> None:
        """Answer the next ``count`` robot posts 200 with a non-zero ``errcode``."""
        self._robot_reject_count = count
        self._robot_errcode = errcode
        self._robot_errmsg = errmsg

    def reset(self) -> None:
        """Forget everything recorded and every knob."""
        self.messages.clear()
        self.robot_messages.clear()
        self.requests.clear()
        self._seen_ids.clear()
        self._fail_count = self._robot_reject_count = 0
        self.delay_seconds = 0.0

    # --- waiting --------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[LocalSmsSink], bool], timeout: float = 5.0) -> None:
        """Return once ``predicate(self)`` holds; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    async def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The accepted SMS once there are at least ``count``."""
        await self.wait_for(lambda s: len(s.messages) >= count, timeout)
        return list(self.messages)

    def _record(self, bucket: list[dict[str, Any]], item: dict[str, Any]) -> None:
        bucket.append(item)
        self._changed.set()

    # --- HTTP -----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except _BadRequest as exc:
                    writer.write(_response(exc.status, {"error": str(exc)}, keep_alive=False))
                    await writer.drain()
                    break
                if request is None:
                    break
                keep_alive = request.headers.get("connection", "").lower() != "close"
                status, payload = await self._route(request)
                if self._server is None:  # went down while answering
                    break
                writer.write(_response(status, payload, keep_alive))
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._connections.discard(writer)
            self._handlers.discard(task)  # type: ignore[arg-type]
            with contextlib.suppress(Exception):
                writer.close()

    async def _route(self, req: _Request) -> tuple[int, Any]:
        if self.delay_seconds:
            # a slow gateway, for timeout tests; stopping the sink cuts the wait short
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.delay_seconds):
                    await self._stopping.wait()
        if req.method == "GET":
            views = {
                "/messages": self.messages,
                "/robot-messages": self.robot_messages,
                "/requests": self.requests,
                "/healthz": {"status": "ok"},
            }
            return (200, views[req.path]) if req.path in views else (404, {"error": "not found"})
        if req.method != "POST":
            return 405, {"error": "method not allowed"}
        if req.path.startswith("/control/"):
            return self._control(req)
        if req.path not in ("/sms", "/cgi-bin/webhook/send"):
            return 404, {"error": "not found"}
        try:
            body = req.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if self._fail_count > 0:
            self._fail_count -= 1
            self._record(self.requests, {"path": req.path, "id": (body or {}).get("id") if isinstance(body, dict) else None,
                                         "status": self._fail_status, "at": _now()})
            return self._fail_status, {"error": "injected failure"}
        if req.path == "/sms":
            return self._accept_sms(req, body)
        return self._accept_robot(req, body)

    def _accept_sms(self, req: _Request, body: Any) -> tuple[int, Any]:
        ok = (
            isinstance(body, dict)
            and isinstance(body.get("id"), str) and body["id"]
            and isinstance(body.get("to"), str) and body["to"]
            and isinstance(body.get("text"), str) and body["text"]
        )
        if not ok:
            self._record(self.requests, {"path": req.path, "id": None, "status": 400, "at": _now()})
            return 400, {"error": 'expected JSON {"id", "to", "text"} with non-empty strings'}
        duplicate = body["id"] in self._seen_ids
        self._record(self.requests, {"path": req.path, "id": body["id"], "status": 200, "duplicate": duplicate, "at": _now()})
        if not duplicate:
            self._seen_ids.add(body["id"])
            self._record(self.messages, {"id": body["id"], "to": body["to"], "text": body["text"], "received_at": _now()})
            log.info("sink accepted sms %s to %s", body["id"], mask_phone(body["to"]))
        return 200, {"accepted": True, "id": body["id"], "duplicate": duplicate}

    def _accept_robot(self, req: _Request, body: Any) -> tuple[int, Any]:
        key = req.query.get("key", "")
        entry = {"path": req.path, "key": key, "at": _now()}
        if not key:
            self._record(self.requests, entry | {"status": 200, "errcode": 93000})
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
        if self._robot_reject_count > 0:
            self._robot_reject_count -= 1
            self._record(self.requests, entry | {"status": 200, "errcode": self._robot_errcode})
            return 200, {"errcode": self._robot_errcode, "errmsg": self._robot_errmsg}
        text = body.get("text") if isinstance(body, dict) else None
        if not (isinstance(body, dict) and body.get("msgtype") == "text" and isinstance(text, dict)
                and isinstance(text.get("content"), str)):
            self._record(self.requests, entry | {"status": 200, "errcode": 40008})
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        self._record(self.requests, entry | {"status": 200, "errcode": 0})
        self._record(self.robot_messages, {"key": key, "content": text["content"], "received_at": _now()})
        return 200, {"errcode": 0, "errmsg": "ok"}

    def _control(self, req: _Request) -> tuple[int, Any]:
        try:
            body = req.json() if req.body else {}
            if req.path == "/control/fail":
                self.fail_next(int(body.get("count", 1)), int(body.get("status", 500)))
            elif req.path == "/control/reject-robot":
                self.reject_next_robot(int(body.get("count", 1)), int(body.get("errcode", 93000)))
            elif req.path == "/control/delay":
                self.delay_seconds = float(body.get("seconds", 0))
            elif req.path == "/control/reset":
                self.reset()
            else:
                return 404, {"error": "not found"}
        except (ValueError, TypeError, AttributeError) as exc:
            return 400, {"error": str(exc)}
        return 200, {"ok": True}


async def _serve(host: str, port: int) -> None:
    sink = await LocalSmsSink(host, port).start()
    print(f"LocalSmsSink on {sink.base_url}: POST /sms, POST /cgi-bin/webhook/send?key=K, GET /messages", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sink.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m tools.sms_sink --port N``: run the sink until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tools.sms_sink", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8199, help="port to listen on (0: any free port)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
