"""ChestAid's ML core: from a chest radiograph to a calibrated pneumonia score and Grad-CAM.

ChestAid supports triage and double reading; it does not diagnose. This package is
usable on its own as a library and through the ``chestaid`` command line.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chestaid")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
