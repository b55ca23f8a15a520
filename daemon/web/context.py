"""What every request of the web role shares: settings, the database, the model in service."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from daemon.db.session import SessionFactory
from daemon.metrics import Exported
from daemon.serving import Serving
from daemon.settings import Settings


@dataclass
class WebContext:
    """The web role's collaborators.

    Args:
        settings: the daemon's settings.
        sessions: the process's session factory.
        serving: the model in service: its threshold, target and bands are asked for per
            request (an activated local calibration shows at once); its weights are
            loaded on the first image analysis unless the worker role loaded them.
        metrics: what ``/metrics`` exports (None: metrics are disabled).
        metrics_token: the bearer token Prometheus presents for ``/metrics``, if any.
    """

    settings: Settings
    sessions: SessionFactory
    serving: Serving
    metrics: Exported | None = None
    metrics_token: str | None = None
    # Uploaded images analysed at once: each holds a decoded image and a forward pass
    # (about 1 GB at full size), so a burst of uploads queues instead of exhausting memory.
    analysis_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(2)
    )
    # Uploads admitted at all (being received, waiting for a slot, or analysed): each
    # holds its body (up to web.upload_max_mb) while it waits, so beyond this many a new
    # one is refused (503) before its body is read.
    upload_admission: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(6)
    )
