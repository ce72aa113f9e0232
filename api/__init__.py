"""User-facing layer: the ``carbon-risk`` command line (``api.cli``) and the HTTP service.

It stays thin: it parses input, calls :mod:`finance_engine` and formats output.
"""
