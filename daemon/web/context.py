"""What every request of the web role shares: settings, the database, the model."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from daemon.db.session import SessionFactory
from daemon.recalibration import ModelProvider
from daemon.settings import Settings
from daemon.worker import ActiveModel, PriorityBands, ServedBundle, load_active_model


@dataclass
class WebContext:
    """The web role's collaborators.

    Args:
        settings: the daemon's settings.
        sessions: the process's session factory.
        served: the served bundle's versions and governed threshold (manifest only).
        bands: the priority bands on the bundle's threshold.
        model: the model in service, when this process already runs one (the worker
            role); otherwise it is loaded on the first image analysis.
    """

    settings: Settings
    sessions: SessionFactory
    served: ServedBundle
    bands: PriorityBands
    model: Callable[[], ActiveModel] | None = None
    # Uploaded images analysed at once: each holds a decoded image and a forward pass
    # (about 1 GB at full size), so a burst of uploads queues instead of exhausting memory.
    analysis_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(2)
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def scoring_model(self) -> ActiveModel:
        """The model with the active calibration, loaded once on first use.

        Raises:
            BundleError, ConfigurationError: the bundle cannot be served.
        """
        with self._lock:
            if self.model is None:
                base = load_active_model(self.settings.model, self.settings.priority.bands)
                self.model = ModelProvider(base, list(self.settings.priority.bands), self.sessions)
            provider = self.model
        return provider()
