"""``carbon-risk calibrate``: fit peril parameters to loss records and write an updated parameter file."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from api.cli.common import (
    CLIError,
    OutputFile,
    echo_json,
    force_option,
    format_option,
    load_model,
    load_portfolio_or_demo,
    note,
    parameter_inputs,
    parameters_option,
    portfolio_input,
)
from api.cli.tables import render_table


@click.command("calibrate")
@click.argument("records", required=False, type=click.Path(dir_okay=False))
@click.option("--exposure", "exposure", type=click.Path(dir_okay=False), default=None,
              help="Exposure CSV: county, year, forest_area_ha and fire-weather covariates per county-year.")
@parameters_option
@click.option("--portfolio", "-p", "portfolio", type=click.Path(dir_okay=False), default=None,
              help="Parcels standing for the recorded forest (`demo` for the shipped demo): the fitted fire rate is "
                   "divided by their mean stand factor (flammability, young stands, fire protection), so the engine "
                   "burns them at the records' rate. Default: a factor of 1, said in the fire rate's note.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the updated parameter file (YAML) here (never over the parameter file it starts from).")
@click.option("--min-records", type=click.IntRange(2, 1_000_000), default=20, show_default=True,
              help="Fewest records a fit needs before it changes a parameter.")
@click.option("--min-events", type=click.IntRange(1, 1_000_000), default=5, show_default=True,
              help="Fewest events of a regional peril (typhoon, ice storm) before its frequency changes.")
@click.option("--make-example", "make_example", type=click.Path(file_okay=False), default=None,
              help="Write simulated example_records.csv and example_exposure.csv into this directory and stop.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=20260101, show_default=True,
              help="Seed of --make-example.")
@force_option
@format_option
def calibrate(records, exposure, parameters, portfolio, output, min_records, min_events, make_example, seed, force,
              fmt):
    """Fit fire, typhoon and ice-storm parameters to loss records.

    Fire frequency by Poisson regression with the forest area as exposure (quasi-Poisson standard
    errors), fire area by lognormal maximum likelihood and loss fractions by their mean and variance
    (moment estimator; total losses count as they are); typhoon and ice-storm frequencies from
    distinct event dates. Prints the fits with goodness of fit (deviance, pseudo-R2, AIC, KS) and the
    parameter changes; with -o writes a copy of the parameter file holding the fitted values
    (source `calibration_records`, confidence `derived`, standard errors in the notes) that cites
    the records, exposure and parameter files by their SHA-256.

    \b
    Examples:
      carbon-risk calibrate --make-example ex/
      carbon-risk calibrate ex/example_records.csv --exposure ex/example_exposure.csv -o lishui_cal.yaml
      carbon-risk calibrate records.csv --exposure exposure.csv --format json
    """
    from models.calibration import CalibrationError, calibrate as run_calibration, load_loss_data
    from models.calibration import write_parameter_file
    from models.calibration.fit import FitError

    if make_example:
        rp, ep = _write_example(make_example, seed, force)
        note(f"wrote {rp} and {ep}")
        if fmt == "json":
            echo_json({"records": str(rp), "exposure": str(ep)})
        else:
            click.echo(f"carbon-risk calibrate {rp} --exposure {ep} -o calibrated.yaml")
        return
    if not records:
        raise CLIError("give a RECORDS.csv file (or --make-example DIR to write an example)")
    if not exposure:
        raise CLIError("--exposure EXPOSURE.csv is required (forest area by county and year)")
    params = load_model(parameters)
    pf = None
    if portfolio is not None:
        pf = load_portfolio_or_demo(None if portfolio == "demo" else portfolio, params)
    if output:
        OutputFile(output, suffixes=(".yaml", ".yml"), force=force, sidecar=False,
                   inputs=[("loss records", records), ("exposure", exposure), *parameter_inputs(params),
                           *([portfolio_input(None if portfolio == "demo" else portfolio)] if portfolio else [])])
    try:
        data = load_loss_data(records, exposure)
        result = run_calibration(data, params, min_records=min_records, min_events=min_events, portfolio=pf)
        written = write_parameter_file(result, params, records, output) if output else None
    except (CalibrationError, FitError) as exc:
        raise CLIError(str(exc).replace("\n", "; ")) from exc
    note(f"{result.n_records} records {result.years[0]}-{result.years[1]} from {records}; "
         f"{len(result.updates)} parameter(s) fitted")
    if written is not None:
        note(f"wrote {output} (version {written.version}, sha256 {written.sha256[:12]})")
    if fmt == "json":
        d = result.to_dict()
        d["output"] = str(output) if output else None
        echo_json(d)
        return
    _print(result, output)


def _write_example(directory: str, seed: int, force: bool) -> tuple[Path, Path]:
    """``--make-example DIR``: the two example files, refused where they exist (unless ``force``), each
    moved into place from a temporary folder."""
    import os
    import shutil
    import tempfile

    from models.calibration import write_example

    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise CLIError(f"--make-example {d}: is a file, not a directory")
    names = ("example_records.csv", "example_exposure.csv")
    if not force:
        there = [n for n in names if (d / n).exists()]
        if there:
            raise CLIError(f"--make-example {d}: {', '.join(there)} already exist(s); give --force to replace")
    d.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".example.", dir=d))
    try:
        rp, ep = write_example(tmp, seed=seed)
        for f in (rp, ep):
            os.replace(f, d / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return d / rp.name, d / ep.name


def _print(result, output) -> None:
    rows = []
    for name, f in result.fits.items():
        d = f.to_dict() if hasattr(f, "to_dict") else f
        if "d2" in d:
            coefs = ", ".join(f"{k}={v:.4g}" for k, v in d["coefficients"].items())
            rows.append((name, f"Poisson: log rate/ha {d['intercept_log_rate_per_unit_exposure']:.4g}"
                         + (f", {coefs}" if coefs else ""),
                         f"D2 {d['d2']:.3f}, McFadden {d['mcfadden_r2']:.3f}, AIC {d['aic']:.1f}, "
                         f"dispersion {d['pearson_dispersion']:.2f}"))
        elif "ks_statistic" in d:
            ps = ", ".join(f"{k}={v:.4g}" for k, v in d["params"].items())
            rows.append((name, f"{d['distribution']}: {ps} (n={d['n_obs']})",
                         f"AIC {d['aic']:.1f}, KS D {d['ks_statistic']:.3f} p {d['ks_pvalue']:.3f}"))
        else:
            rows.append((name, ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in d.items() if not isinstance(v, list)), ""))
    click.echo(render_table(pd.DataFrame(rows, columns=["fit", "estimate", "goodness of fit"])))
    for name, f in result.fits.items():
        if hasattr(f, "count_table"):
            click.echo(f"\n{name}: county-years by number of events")
            click.echo(render_table(pd.DataFrame(list(f.count_table), columns=["events", "observed", "expected"])))
    if result.updates:
        click.echo("\nparameter changes" + (f" (written to {output})" if output else " (not written: no -o)"))
        click.echo(render_table(pd.DataFrame(
            [(".".join(u.path), _short(u.old), _short(u.new)) for u in result.updates],
            columns=["parameter", "old", "new"])))
    for s in result.skipped:
        click.echo(f"skipped: {s}")


def _short(d: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in d.items())


COMMANDS = [calibrate]
