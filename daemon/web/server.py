"""The ``web`` role: serves the web application with uvicorn in a thread of the daemon.

The listening socket is bound before the thread starts, so a port in use fails the
daemon's start with an ``OSError`` (like the SCP's) instead of a thread dying later.
On first start (no account yet) an ``admin`` account is created and its one-time
password written to the log at WARNING, once.
"""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn

from daemon import accounts
from daemon.db.session import SessionFactory, writing
from daemon.metrics import Exported, read_token
from daemon.serving import Serving
from daemon.settings import Settings
from daemon.web.app import create_app
from daemon.web.context import WebContext

logger = logging.getLogger(__name__)


def first_start(sessions: SessionFactory) -> None:
    """Create the first admin when there is no account, and log its one-time password."""
    with writing(sessions) as session:
        password = accounts.ensure_first_admin(session)
    if password is not None:
        logger.warning(
            "first start: web account 'admin' created; sign in with this one-time password "
            "and choose a new one",
            extra={"username": accounts.FIRST_ADMIN, "one_time_password": password},
        )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"web interface cannot listen on {host}:{port}: {exc.strerror}"
        ) from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class WebServer:
    """The web application on its own thread."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        *,
        serving: Serving | None = None,
        metrics: Exported | None = None,
    ) -> None:
        web = settings.web
        context = WebContext(
            settings=settings,
            sessions=sessions,
            serving=serving
            if serving is not None
            else Serving(settings.model, settings.priority.bands, sessions),
            metrics=metrics,
            metrics_token=read_token(settings.metrics.token_file) if metrics else None,
        )
        self.app = create_app(context)
        self._socket = _bind(web.host, web.port)
        config = uvicorn.Config(
            self.app,
            log_config=None,  # the daemon's JSON logging
            access_log=False,
            server_header=False,
            proxy_headers=False,
            ssl_certfile=str(web.tls_certificate) if web.tls_certificate else None,
            ssl_keyfile=str(web.tls_key) if web.tls_key else None,
            timeout_graceful_shutdown=10,
            limit_concurrency=64,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="chestaid-web"
        )
        self.address = self._socket.getsockname()[:2]

    def start(self) -> None:
        """Serve from now on."""
        self._thread.start()
        scheme = "https" if self.app.state.context.settings.web.https else "http"
        host, port = self.address
        logger.info("web interface listening", extra={"url": f"{scheme}://{host}:{port}/"})

    @property
    def alive(self) -> bool:
        """Whether the server thread runs (the watchdog's test)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Finish the requests in flight and stop."""
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._socket.close()
