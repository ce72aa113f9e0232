"""Forest carbon science: parcels, parameters, stand growth, carbon accounting and perils.

Nothing in this package knows about money or HTTP.
"""

from models._version import __version__

MODEL_VERSION = __version__

__all__ = ["MODEL_VERSION", "__version__"]
