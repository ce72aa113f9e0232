"""The ``carbon-risk`` command line.

One entry point with subcommands; each subcommand lives in its own module under
:mod:`api.cli.commands` and is registered here by discovery, so a new capability is one new module.

Conventions every command follows: readable summary on stdout by default; ``--format json`` prints
the full result as JSON on stdout and nothing else there; progress and notes go to stderr; exit code
0 on success, 2 on bad input (one clear line, never a traceback), 1 on any other failure. Every name,
suffix and output path is checked before any simulation; ``-o`` replaces an existing file only with
``--force`` and never one of the command's inputs (:class:`api.cli.common.OutputFile`).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from api.cli.common import CLIError, run_guarded
from models import __version__

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="carbon-risk")
def cli() -> None:
    """Forest carbon risk engine for Lishui: measure, pledge, insure and stress forest carbon.

    \b
    Examples:
      carbon-risk demo                          # the whole demo analysis on the shipped portfolio
      carbon-risk validate my_parcels.csv       # check a portfolio file, list every bad row
      carbon-risk accounts --level county       # carbon stock and sink by county
      carbon-risk simulate --years 30 --paths 2000 -o out/
      carbon-risk collateral --amount 1500000 --term 3 --rate 0.0435 --project LS-LQ-P01 -o memo.html
      carbon-risk quote --cover sink-index -o slip.html
      carbon-risk stress --all -o stress.html
      carbon-risk serve --demo                  # the HTTP API and dashboard on http://127.0.0.1:8000

    Every command: --help for its options and examples. --format json for machine-readable output:
    every command except demo, serve and admin key revoke.
    """


def _register() -> None:
    from api.cli import commands

    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{mod.name}")
        for obj in getattr(module, "COMMANDS", ()):
            cli.add_command(obj)


_register()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point (``carbon-risk``)."""
    return run_guarded(cli, argv if argv is not None else sys.argv[1:])


__all__ = ["CLIError", "cli", "main"]
