"""Calibration: fit peril parameters to loss records and write an updated parameter file.

>>> import numpy as np
>>> from models.calibration import simulate_records
>>> records, exposure = simulate_records(np.random.default_rng(1))   # synthetic example data

See :mod:`models.calibration.core` for what is fitted and which parameter each fit updates,
:mod:`models.calibration.fit` for the estimators and goodness-of-fit statistics, and
:mod:`models.calibration.records` for the input files.
"""

from models.calibration.core import (
    CalibrationResult,
    ParameterUpdate,
    calibrate,
    drought_fire_factor,
    input_provenance,
    stand_fire_factor,
    updated_parameter_document,
    weather_log_sd_fit,
    weather_log_sds,
    write_parameter_file,
)
from models.calibration.fit import FitError, PoissonFit, SeverityFit, fit_beta, fit_lognormal, fit_poisson
from models.calibration.records import (
    CalibrationError,
    LossData,
    example_spec,
    load_loss_data,
    simulate_records,
    validate_exposure,
    validate_records,
    write_example,
)

__all__ = [
    "CalibrationError", "CalibrationResult", "FitError", "LossData", "ParameterUpdate", "PoissonFit",
    "SeverityFit", "calibrate", "drought_fire_factor", "example_spec", "fit_beta", "fit_lognormal", "fit_poisson",
    "input_provenance", "load_loss_data", "simulate_records", "stand_fire_factor", "updated_parameter_document",
    "validate_exposure", "validate_records", "weather_log_sd_fit", "weather_log_sds", "write_example",
    "write_parameter_file",
]
