"""Run the studio app on a local HTTP server (werkzeug's threaded server, which Flask ships)."""
from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from werkzeug.serving import BaseWSGIServer, make_server

from montage.errors import MontageError

from .app import create_app
from .engine import Studio, StudioConfig


@dataclass
class RunningStudio:
    """A studio serving in a background thread (tests, embedding)."""
    studio: Studio
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host = self.server.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.server.port}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.studio.close()


def hosts_for(host: str, port: int) -> set[str]:
    """Host header values that name this server (loopback names when bound to loopback)."""
    names = {host, f"[{host}]"} if ":" in host else {host}
    if host in ("127.0.0.1", "localhost", "::1"):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    return {f"{n}:{port}" for n in names}


def _check_free(host: str, port: int) -> None:
    """Raise OSError when (host, port) cannot be bound, e.g. another program holds the port."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise OSError(err.errno, f"unknown host ({err.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as werkzeug's server does
        s.bind(addr)


def start(cfg: StudioConfig, host: str = "127.0.0.1", port: int = 0) -> RunningStudio:
    """Open the project, warm the text model and serve in a thread. Returns at once."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)   # no line per request
    try:
        _check_free(host, port)   # before loading anything; werkzeug would sys.exit(1) instead
    except OSError as err:
        raise MontageError(f"cannot serve on {host}:{port}: {err.strerror}") from None
    studio = Studio(cfg)
    studio.embedder.embed(["warm up"])         # load MiniLM now, not on the first keystroke
    if studio.session.script:
        studio.update()
    try:
        server = make_server(host, port, None, threaded=True)
    except (OSError, SystemExit) as err:   # taken in the meantime
        studio.close()
        raise MontageError(f"cannot serve on {host}:{port}: {getattr(err, 'strerror', None) or 'in use'}") from None
    # On loopback only the loopback names are answered (no DNS rebinding); an explicit other
    # address means the user wants the studio on the network, reached by whatever name.
    loopback = host in ("127.0.0.1", "localhost", "::1")
    server.app = create_app(studio, hosts_for(host, server.port) if loopback else None)
    thread = threading.Thread(target=server.serve_forever, name="studio-http", daemon=True)
    thread.start()
    return RunningStudio(studio, server, thread)


def serve(project: Path, library: Path | None, host: str, port: int,
          size: tuple[int, int] | None = None, announce: Callable[[str], None] = print) -> int:
    """Serve until Ctrl-C (the CLI)."""
    running = start(StudioConfig(project=Path(project), library=library, size=size), host, port)
    announce(running.url)
    try:
        while running.thread.is_alive():
            running.thread.join(timeout=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    return 0
