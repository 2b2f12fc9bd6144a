"""Netron on loopback: serve a model file or an in-memory (edited) ``workbench.Model`` at 127.0.0.1.

    from workbench.widgets.netron import serve_netron
    srv = serve_netron(model)      # starts Netron's HTTP server thread on 127.0.0.1:<free port>
    srv.url                        # 'http://127.0.0.1:PORT'
    srv                            # in a notebook: an IFrame showing it
    srv.stop()                     # or use it as a context manager

Uses the ``netron`` package (9.x): ``netron.serve(file, data, address, browse=False)`` returns the
bound ``(host, port)``; ``netron.stop(address)`` stops that server only. An in-memory model is passed
as bytes (``data``) with a ``.onnx`` file name for format detection; nothing is written to disk.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError, WorkbenchError
from ..model import Model
from ..graph import as_model

HOST = "127.0.0.1"


class NetronServer:
    """A running Netron server for one model, bound to 127.0.0.1."""

    def __init__(self, address: tuple[str, int], name: str):
        self.address = address
        self.name = name
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    @property
    def running(self) -> bool:
        import netron

        return not self._stopped and netron.status(self.address)

    def stop(self) -> None:
        """Stop this server (other Netron servers keep running)."""
        import netron

        if not self._stopped:
            netron.stop(self.address)
            self._stopped = True

    def widget(self, height: int = 700):
        """An ``IPython.display.IFrame`` showing this server (``netron.widget``)."""
        import netron

        return netron.widget(self.address, height=height)

    def _repr_html_(self) -> str:
        if self._stopped:
            return f"<p>Netron for {self.name!r} was stopped.</p>"
        return self.widget()._repr_html_()

    def __enter__(self) -> "NetronServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<NetronServer {self.name!r} {self.url} {state}>"


def serve_netron(model, *, port: int = 0, quiet: bool = True) -> NetronServer:
    """Serve ``model`` (path, bytes, ``onnx.ModelProto``, ``workbench.Model`` or ``Variant``) with Netron on 127.0.0.1.

    ``port=0`` picks a free port. A model loaded from a file that is unchanged is served from that
    file (so its external data is found); other models are serialized in memory (< 2 GB).
    """
    try:
        import netron
    except ImportError:
        raise UsageError("Netron is not installed: pip install netron") from None
    if not isinstance(port, int) or not 0 <= port < 65536:
        raise UsageError(f"port must be an integer in 0..65535, got {port!r}")
    if isinstance(model, (str, os.PathLike)) and not Path(model).is_file():
        raise UsageError(f"model file not found: {model}")
    m: Model = as_model(model)
    if m.source is not None and m.source.is_file():
        file, data = str(m.source), None
    else:
        file, data = f"{m.name}.onnx", bytearray(m.to_bytes())  # bytearray: served as-is, not "experimental"
    if quiet:
        import logging

        logging.getLogger("netron.server").setLevel(logging.WARNING)
    try:
        address = netron.serve(file, data, address=(HOST, port), browse=False)
    except OSError as e:
        raise WorkbenchError(f"Netron could not listen on {HOST}:{port}: {e}", hint="try another --port") from None
    if address[0] != HOST:  # never expose the model beyond loopback
        netron.stop(address)
        raise WorkbenchError(f"Netron bound {address[0]}, not {HOST}; stopped it")
    return NetronServer(tuple(address), m.name)
