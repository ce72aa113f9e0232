"""Single source of the engine's version; results record it as ``model_version``."""

__version__ = "0.1.0"
