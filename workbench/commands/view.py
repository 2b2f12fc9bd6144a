"""``workbench view MODEL``: Netron on 127.0.0.1 (Ctrl-C stops), or ``--html OUT`` for the offline viewer page."""
from __future__ import annotations

import argparse
import sys
import time

from ._common import add_model

NAME = "view"
HELP = "view a model: Netron on 127.0.0.1, or --html OUT.html for a self-contained offline page"
DESCRIPTION = (
    "Without --html: serve MODEL with Netron on 127.0.0.1, print the URL and wait (Ctrl-C stops). "
    "With --html OUT.html: write the workbench graph viewer as one offline HTML page (all JavaScript "
    "inline, every node included; groups by name scope start collapsed on big graphs)."
)


def add_arguments(p) -> None:
    add_model(p)
    p.add_argument("--html", metavar="OUT.html", default=None, help="write an offline HTML viewer page instead of serving")
    p.add_argument("--port", type=int, default=0, help="Netron port on 127.0.0.1 (default: a free port)")
    # test hook: serve for N seconds, then stop
    p.add_argument("--for-seconds", type=float, default=None, help=argparse.SUPPRESS)


def run(args) -> int:
    from ..model import load

    model = load(args.model)
    if args.html:
        from ..widgets.graph_view import export_html

        export_html(model, args.html)
        print(f"wrote {args.html} ({len(model.graph.node):,} nodes)")
        return 0
    from ..widgets.netron import serve_netron

    srv = serve_netron(model, port=args.port)
    print(f"Netron serving {model.name} at {srv.url}  (Ctrl-C to stop)", flush=True)
    try:
        t0 = time.monotonic()
        while srv.running and (args.for_seconds is None or time.monotonic() - t0 < args.for_seconds):
            time.sleep(0.2)
    except KeyboardInterrupt:
        sys.stdout.write("\nstopping\n")
    finally:
        srv.stop()
    return 0
