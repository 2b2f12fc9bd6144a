"""Netron on loopback: serve one model (a file or an in-memory, edited ``workbench.Model``) at 127.0.0.1.

    from workbench.widgets.netron import serve_netron
    srv = serve_netron(model)      # an HTTP server thread on 127.0.0.1:<random free port>
    srv.url                        # 'http://127.0.0.1:PORT'
    srv                            # in a notebook: an IFrame showing it
    srv.stop()                     # or use it as a context manager

The viewer's own files (HTML, JavaScript, metadata) come from the installed ``netron`` package (9.x);
the server is ours, because Netron's serves every file in the model's folder and accepts any ``Host``
header. This one answers only:

- the viewer's assets (files of the ``netron`` package with a known web extension);
- ``/data/<model file name>`` and ``/data/<external data location>`` of *this* model — nothing else
  from its folder (no ``.npz`` next to it, no other models, no ``..``);
- requests whose ``Host`` is a loopback name (``127.0.0.1``, ``localhost``, ``[::1]``, any port):
  a web page on another origin cannot read the model through DNS rebinding.

It binds 127.0.0.1 only, on a random free port unless ``port=`` names one. An in-memory model is
served from memory; nothing is written to disk. See docs/security.md.
"""
from __future__ import annotations

import http.server
import os
import re
import socketserver
import threading
import urllib.parse
from pathlib import Path

from ..errors import UsageError, WorkbenchError
from ..graph import as_model
from ..model import Model

HOST = "127.0.0.1"
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]", "::1"}
MIME = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
        ".gif": "image/gif", ".jpg": "image/jpeg", ".ico": "image/x-icon", ".json": "application/json",
        ".pb": "application/octet-stream", ".ttf": "font/truetype", ".otf": "font/opentype",
        ".eot": "application/vnd.ms-fontobject", ".woff": "font/woff", ".woff2": "font/woff2",
        ".svg": "image/svg+xml"}


def host_allowed(host: str | None) -> bool:
    """True when a ``Host`` header names the loopback interface (with or without a port)."""
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):
        name = host[: host.find("]") + 1] if "]" in host else host
        rest = host[len(name):]
    else:
        name, _, port = host.partition(":")
        rest = f":{port}" if _ else ""
    if rest and not re.fullmatch(r":\d{1,5}", rest):
        return False
    return name in LOOPBACK_NAMES


class _Content:
    """What one server may hand out under /data/: the model and its external data files, by name."""

    def __init__(self, model: Model):
        self.name = model.name
        if model.source is not None and model.source.is_file():
            self.base = model.source.name
            self.files = {self.base: model.source}
            for ef in model.external_files:
                self.files[ef.location.replace("\\", "/")] = ef.path
            self.data = None
        else:
            self.base = f"{model.name}.onnx"
            self.files = {}
            self.data = bytes(model.to_bytes())

    def read(self, name: str) -> bytes | None:
        if self.data is not None:
            return self.data if name == self.base else None
        path = self.files.get(name)
        if path is None:
            return None
        from ..fsutil import read_input_bytes

        try:
            return read_input_bytes(path, "model file")
        except WorkbenchError:
            return None


def _handler(content: _Content):
    import netron

    static = Path(netron.__file__).resolve().parent
    version = getattr(netron, "__version__", "")

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "workbench-netron"

        def log_message(self, format, *args):  # quiet
            pass

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            if not host_allowed(self.headers.get("Host")):
                return self._send(403, "text/plain", b"forbidden: Host must be a loopback name")
            path = urllib.parse.urlsplit(self.path).path
            if path == "/":
                path = "/index.html"
            if path.startswith("/data/"):
                body = content.read(urllib.parse.unquote(path[len("/data/"):]))
                if body is None:
                    return self._send(404, "text/plain", b"404")
                return self._send(200, "application/octet-stream", body)
            rel = urllib.parse.unquote(path).lstrip("/")
            target = (static / rel).resolve()
            if static not in target.parents or target.suffix not in MIME or not target.is_file():
                return self._send(404, "text/plain", b"404")
            body = target.read_bytes()
            if rel == "index.html":
                meta = ['<meta name="type" content="Python">', f'<meta name="version" content="{version}">',
                        f'<meta name="file" content="/data/{urllib.parse.quote(content.base)}">',
                        f'<meta name="name" content="{_attr(content.name)}">',
                        f'<meta name="identifier" content="{_attr(content.base)}">']
                body = re.sub(rb'<meta name="version" content=".*">', lambda _: "\n".join(meta).encode(), body)
            return self._send(200, MIME[target.suffix], body)

        def _send(self, status: int, ctype: str, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


def _attr(text: str) -> str:
    import html

    return html.escape(str(text), quote=True)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = False


class NetronServer:
    """A running Netron server for one model, bound to 127.0.0.1."""

    def __init__(self, server: _Server, name: str):
        self._server = server
        self.address = server.server_address[:2]
        self.name = name
        self._stopped = False
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"netron-{self.address[1]}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    @property
    def running(self) -> bool:
        return not self._stopped and self._thread.is_alive()

    def stop(self) -> None:
        """Stop this server (other servers keep running)."""
        if not self._stopped:
            self._stopped = True
            self._server.shutdown()
            self._server.server_close()

    def widget(self, height: int = 700):
        """An ``IPython.display.IFrame`` showing this server."""
        from IPython.display import IFrame

        return IFrame(self.url, width="100%", height=height)

    def _repr_html_(self) -> str:
        if self._stopped:
            return f"<p>Netron for {_attr(self.name)} was stopped.</p>"
        return self.widget()._repr_html_()

    def __enter__(self) -> NetronServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<NetronServer {self.name!r} {self.url} {state}>"


def serve_netron(model, *, port: int = 0, quiet: bool = True) -> NetronServer:
    """Serve ``model`` (path, bytes, ``onnx.ModelProto``, ``workbench.Model`` or ``Variant``) with Netron on 127.0.0.1.

    ``port=0`` (the default) picks a random free port. A model loaded from a file that is unchanged is
    served from that file (with its external data); other models are serialized in memory (< 2 GB).
    ``quiet`` is kept for compatibility: the server never logs requests.
    """
    try:
        import netron  # noqa: F401 - the viewer's assets
    except ImportError:
        raise UsageError("Netron is not installed: pip install netron") from None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise UsageError(f"port must be an integer in 0..65535, got {port!r}")
    if isinstance(model, (str, os.PathLike)):
        from ..fsutil import check_input_file

        check_input_file(model, "model file", error=UsageError)
    m: Model = as_model(model)
    content = _Content(m)
    try:
        server = _Server((HOST, port), _handler(content))
    except OSError as e:
        raise WorkbenchError(f"Netron could not listen on {HOST}:{port}: {e.strerror or e}",
                             hint="try another --port") from None
    if server.server_address[0] != HOST:  # never expose the model beyond loopback
        server.server_close()
        raise WorkbenchError(f"the server bound {server.server_address[0]}, not {HOST}; stopped it")
    return NetronServer(server, m.name)
