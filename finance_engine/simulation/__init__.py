"""The Monte Carlo engine: chunked, reproducible to the bit, local or on Dask.

Entry point: :func:`simulate`. See :mod:`finance_engine.simulation.engine` for the run, and
:mod:`finance_engine.simulation.summary` for how uncertainty is reported.
"""

from finance_engine.simulation.config import PATH_BLOCK, SimulationConfig
from finance_engine.simulation.engine import (Progress, RunsProgress, SimulationCancelled, auto_chunk_paths,
                                              balanced_chunk_paths, chunk_ranges, simulate, useful_threads)
from finance_engine.simulation.result import SimulationResult

__all__ = ["PATH_BLOCK", "Progress", "RunsProgress", "SimulationCancelled", "SimulationConfig", "SimulationResult",
           "auto_chunk_paths", "balanced_chunk_paths", "chunk_ranges", "simulate", "useful_threads"]
