"""Shared CLI plumbing: error handling, output formats, the default portfolio and parameter set, and the
outputs every command writes (:class:`OutputFile`, :class:`OutputDir`: checked before any work, never over
an existing file without ``--force`` nor ever over an input, written atomically, with their provenance)."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import click
import numpy as np

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class CLIError(click.ClickException):
    """Bad input: printed as one line, exit code 2."""

    exit_code = EXIT_BAD_INPUT


#: the engine's account levels (``finance_engine.simulation.config.ALL_LEVELS``) as the commands offer them, written
#: out so the CLI starts without importing the engine (tests/test_cli_quote.py holds the two equal)
LEVEL_CHOICES = ["portfolio", "province", "city", "county", "township", "village", "project_id", "species_group",
                 "parcel"]


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.bool_):
        return bool(o)
    if is_dataclass(o):
        return asdict(o)
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def json_text(obj: Any) -> str:
    """Valid JSON of a result (NaN and infinities, such as an unbounded interval end, become null)."""
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    return json.dumps(_clean(json.loads(json.dumps(obj, default=_json_default, allow_nan=True))),
                      ensure_ascii=False, indent=2, allow_nan=False)


def echo_json(obj: Any) -> None:
    """Print JSON (NaN and infinities become null) on stdout."""
    click.echo(json_text(obj))


def note(msg: str) -> None:
    """A progress or information line on stderr."""
    click.echo(msg, err=True)


def model_notes_text(notes: dict | None) -> list[str]:
    """Readable lines for what the engine's perils recorded about a run's set-up (provenance
    ``model_notes``): an empty list when there is nothing to say."""
    out = []
    outside = (notes or {}).get("pine_wilt_hosts_outside_landscape", 0)
    if outside:
        out.append(f"note: {outside} pine parcel(s) lie outside the region's pine wilt landscape; their cells are "
                   "simulated around them, driven by the region's epidemic but not part of it (build a landscape "
                   "that covers them: carbon-risk landscape)")
    return out


def show_model_notes(provenance: dict) -> None:
    """Print :func:`model_notes_text` of a result's provenance on stderr, with its parameter variant."""
    for line in model_notes_text(provenance.get("model_notes")):
        note(line)
    if provenance.get("parameter_variant"):
        note(f"note: parameters derived from the file in memory: {provenance['parameter_variant']}")


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------
class FiniteFloat(click.ParamType):
    """A number option that refuses NaN and the infinities (``--amount inf`` would otherwise run the
    whole simulation and fail, or answer nonsense, at the end)."""

    name = "number"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            f = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(f):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return f


FINITE = FiniteFloat()


def force_option(f: Callable) -> Callable:
    return click.option("--force", is_flag=True,
                        help="Replace an existing output (never one of the command's own input files).")(f)


# ---------------------------------------------------------------------------------------------
# Outputs: refuse to clobber, never overwrite an input, write atomically, record provenance
# ---------------------------------------------------------------------------------------------
T = TypeVar("T")
Inputs = Iterable[tuple[str, "str | Path | None"]]


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (links and relative spellings included)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def parameter_inputs(params) -> list[tuple[str, Path]]:
    """The parameter file and the data files it names (the pine wilt landscape, looked up next to the
    file and then among the shipped ones): the inputs a command reads through ``--parameters``."""
    from models.parameters import PARAMETER_DIR

    here = Path(params.path)
    out = [("parameter file", here)]
    for name, block in (params.perils or {}).items():
        ref = getattr(block, "landscape", None)
        file = getattr(ref, "file", None)
        if file:
            for place in (here.parent / file, PARAMETER_DIR / file):
                out.append((f"{name} data file named by the parameter file {here.name}", place))
    return out


def portfolio_input(path: str | None) -> tuple[str, Path]:
    """``("portfolio", path)``; the shipped demo portfolio when no path is given."""
    if path is None:
        from models.demo import DEMO_PORTFOLIO_PATH

        return ("portfolio", Path(DEMO_PORTFOLIO_PATH))
    return ("portfolio", Path(path))


def _check_folder(folder: Path, option: str, what: Path) -> None:
    if not folder.exists():
        raise CLIError(f"{option} {what}: directory {folder} does not exist")
    if not folder.is_dir():
        raise CLIError(f"{option} {what}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {what}: cannot write into directory {folder} (permission denied)")


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _settle_mode(tmp: Path, final: Path, default: int = 0o666) -> None:
    """Give a temporary file (mode 0600 from mkstemp) the mode the final file has, or would get."""
    try:
        mode = final.stat().st_mode & 0o7777 if final.exists() else default & ~_umask()
        os.chmod(tmp, mode)
    except OSError:
        pass


def _temp_beside(path: Path) -> Path:
    # the temporary name keeps the suffix: writers such as pandas pick the format from it
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _file_sha256(p: Path) -> str | None:
    import hashlib

    try:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


def provenance_document(result_provenance: dict | None, inputs: Inputs, output: str | Path) -> dict[str, Any]:
    """What an output file records about how it was made: the command and its options, every input
    file read (path and SHA-256), when, and the result's own provenance (model, parameter hash, seed,
    paths ...)."""
    from models import __version__

    ctx = click.get_current_context(silent=True)
    seen, files = set(), []
    for role, p in inputs:
        if p is None or not Path(p).is_file():
            continue
        key = os.path.realpath(p)
        if key in seen:
            continue
        seen.add(key)
        files.append({"role": role, "path": str(p), "sha256": _file_sha256(Path(p))})
    return {
        "file": Path(output).name,
        "written_by": f"carbon-risk {__version__}",
        "command": ctx.command_path if ctx is not None else None,
        "options": {k: v for k, v in (ctx.params.items() if ctx is not None else ())},
        "inputs": files,
        "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "result": result_provenance or {},
    }


def provenance_frame(doc: dict[str, Any]):
    """The provenance sheet of a workbook: one ``key``/``value`` row per item (nested items as
    dotted keys; lists and other structures as JSON text)."""
    import pandas as pd

    rows: list[dict[str, Any]] = []

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict) and v:
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                walk(f"{prefix}.{i}", x)
        elif isinstance(v, (list, tuple, dict)):
            rows.append({"key": prefix, "value": json.dumps(_clean(v), ensure_ascii=False, default=str)})
        else:
            v = v.item() if isinstance(v, np.generic) else v
            rows.append({"key": prefix, "value": v if isinstance(v, (int, float, bool, str)) or v is None
                         else str(v)})

    walk("", doc)
    return pd.DataFrame(rows, columns=["key", "value"])


def interval_columns(key: str) -> tuple[str, str]:
    """Spreadsheet columns of a ``[low, high]`` value, the unit kept last: ``ci95_cny`` -> ``ci95_low_cny``,
    ``ci95_high_cny``."""
    for unit in ("_cny", "_tco2e", "_ha"):
        if key.endswith(unit):
            return f"{key[:-len(unit)]}_low{unit}", f"{key[:-len(unit)]}_high{unit}"
    return f"{key}_low", f"{key}_high"


class OutputFile:
    """A file a command writes (``--output``), checked before any work is done.

    Refused: an unsupported suffix, a folder that does not exist or cannot be written, an existing
    file unless ``force``, and always (even with ``force``) a path that is one of the command's own
    inputs. :meth:`write` writes through a temporary file in the same folder and ``os.replace``, so a
    failed write leaves the old file intact. A CSV output gets its provenance in a sibling
    ``<file>.provenance.json``; a workbook gets it as a ``provenance`` sheet (:func:`provenance_frame`).
    """

    def __init__(self, path: str | Path, *, suffixes: Iterable[str], force: bool, inputs: Inputs = (),
                 option: str = "--output", sidecar: bool | None = None):
        self.path = Path(path)
        self.option = option
        self.inputs = [(r, p) for r, p in inputs if p is not None]
        allowed = tuple(suffixes)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in allowed:
            raise CLIError(f"{option} {path}: unsupported file type {self.suffix or '(none)'!r}; "
                           f"use {', '.join(allowed)}")
        with_sidecar = self.suffix == ".csv" if sidecar is None else sidecar
        self.sidecar = Path(f"{self.path}.provenance.json") if with_sidecar else None
        targets = [self.path, *([self.sidecar] if self.sidecar else [])]
        _check_folder(self.path.parent, option, self.path)
        for t in targets:
            if t.is_dir():
                raise CLIError(f"{option} {t}: is a directory, not a file")
        for role, q in self.inputs:
            for t in targets:
                if same_file(t, q):
                    raise CLIError(f"{option} {path}: that is the {role} this command reads ({q}); write the "
                                   "output to another file (--force never replaces an input)")
        self.force = force
        if not force:
            for t in targets:
                if t.exists() or t.is_symlink():
                    raise CLIError(f"{option} {path}: {t} already exists; give --force to replace it")

    def _move(self, tmp: Path, target: Path) -> None:
        """``tmp`` onto ``target``: replacing it only with ``force``; without, a file that appeared there while
        the command ran is refused, not overwritten (a hard link fails where the name exists)."""
        if self.force:
            os.replace(tmp, target)
            return
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise CLIError(f"{self.option} {self.path}: {target} appeared while the command ran; not replaced "
                           "(give --force to replace it)") from None
        except OSError:  # a file system without hard links: the check made before the run stands
            os.replace(tmp, target)
            return
        tmp.unlink()

    def write(self, writer: Callable[[Path], T], provenance: dict | None = None) -> T:
        """``writer(tmp_path)`` then the move into place; with ``provenance`` (a CSV output) its
        sibling ``.provenance.json`` too, moved in right after the file."""
        tmp = _temp_beside(self.path)
        side = _temp_beside(self.sidecar) if self.sidecar is not None and provenance is not None else None
        try:
            result = writer(tmp)
            if side is not None:
                side.write_text(json_text(provenance) + "\n", encoding="utf-8")
                _settle_mode(side, self.sidecar)
            _settle_mode(tmp, self.path)
            self._move(tmp, self.path)
            if side is not None:
                self._move(side, self.sidecar)
        except BaseException:
            tmp.unlink(missing_ok=True)
            if side is not None:
                side.unlink(missing_ok=True)
            raise
        return result

    def write_text(self, text: str) -> None:
        self.write(lambda p: p.write_text(text, encoding="utf-8"))

    def provenance(self, result_provenance: dict | None) -> dict[str, Any]:
        return provenance_document(result_provenance, self.inputs, self.path)


#: the files a ``simulate -o DIR`` run writes (finance_engine.simulation.result.SimulationResult.write)
@functools.lru_cache(maxsize=1)
def _run_files() -> frozenset[str]:
    """The files SimulationResult.write writes (imported when needed: the engine is slow to import)."""
    from finance_engine.simulation.result import SimulationResult

    return frozenset({f"{t}.{ext}" for t in SimulationResult.TABLE_NAMES for ext in ("csv", "parquet")}
                     | {"provenance.json"})


def _is_previous_run(folder: Path) -> bool:
    """A folder holding only the files of a previous ``simulate -o`` run (with its provenance.json)."""
    entries = list(folder.iterdir())
    if not all(e.name in _run_files() and e.is_file() and not e.is_symlink() for e in entries):
        return False
    try:
        doc = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "provenance" in doc and "run_info" in doc


def _inside(child: str | Path, folder: Path) -> bool:
    c, f = os.path.realpath(child), os.path.realpath(folder)
    return c == f or c.startswith(f.rstrip(os.sep) + os.sep)


class OutputDir:
    """A folder a command fills with one run's files (``simulate -o DIR``), checked before the run.

    A new or empty folder is fine. A folder holding only a previous carbon-risk run's files needs ``force``
    (as ``-o`` replaces an existing file only with ``--force``: re-running a command with another portfolio
    threw away the earlier run): :meth:`write` then fills a temporary sibling folder and swaps it into place,
    so the folder holds one run's files and a failed write leaves the old ones. Any other non-empty folder
    needs ``force`` too, and then only the run's files in it are replaced (written beside, then renamed over;
    an earlier run's tables this run does not write are removed): the folder's other files and subfolders
    are kept. A folder holding one of the command's inputs (or the current directory) is refused even with
    ``force``.
    """

    def __init__(self, path: str | Path, *, force: bool, inputs: Inputs = (), option: str = "--output"):
        given = Path(path)
        self.option = option
        self.path = Path(os.path.realpath(given))  # a link to a folder: the folder it names
        if self.path.exists() and not self.path.is_dir():
            raise CLIError(f"{option} {given}: is a file, not a directory")
        if self.path.parent == self.path:
            raise CLIError(f"{option} {given}: cannot replace the root directory")
        if _inside(os.getcwd(), self.path):
            raise CLIError(f"{option} {given}: is (or holds) the current directory; the output folder is "
                           "replaced as a whole, so name a folder of its own")
        for role, q in inputs:
            if q is not None and _inside(q, self.path):
                raise CLIError(f"{option} {given}: holds the {role} this command reads ({q}); the output folder "
                               "is replaced as a whole, so name another folder (--force never replaces an input)")
        anc = self.path.parent
        while not anc.exists():
            anc = anc.parent
        _check_folder(anc, option, given)
        if self.path.is_dir() and any(self.path.iterdir()) and not force:
            names = sorted(e.name for e in self.path.iterdir())
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            if _is_previous_run(self.path):
                raise CLIError(f"{option} {given}: the folder holds a previous carbon-risk run's files ({shown}); "
                               "give --force to replace them with this run's, or name a new folder")
            raise CLIError(f"{option} {given}: the folder is not empty and does not hold only a previous carbon-risk "
                           f"run's files ({shown}); give --force to write the run's files into it (its other files "
                           "are kept), or name a new folder")

    def write(self, writer: Callable[[Path], T]) -> T:
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_dir() and any(self.path.iterdir()) and not _is_previous_run(self.path):
            return self._write_beside(writer)  # --force on a folder with files of its own: keep them
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".part", dir=parent))
        old = None
        try:
            result = writer(tmp)
            mode = (self.path.stat().st_mode & 0o7777) if self.path.exists() else 0o777 & ~_umask()
            os.chmod(tmp, mode)
            if self.path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".old", dir=parent))
                os.replace(self.path, old)  # onto the empty folder just made
            try:
                os.replace(tmp, self.path)
            except BaseException:
                if old is not None:
                    os.replace(old, self.path)
                    old = None
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return result

    def _write_beside(self, writer: Callable[[Path], T]) -> T:
        """Write the run into a temporary folder inside the output folder, then rename each of its files over
        the folder's; an earlier run's files this run does not write are removed, nothing else is touched."""
        tmp = Path(tempfile.mkdtemp(prefix=".carbon-risk-run.", suffix=".part", dir=self.path))
        try:
            result = writer(tmp)
            made = {p.name for p in tmp.iterdir()}
            for name in _run_files() - made:
                stale = self.path / name
                if stale.is_file() and not stale.is_symlink():
                    stale.unlink()
            mode = 0o666 & ~_umask()
            for name in sorted(made - {"provenance.json"}) + ["provenance.json"] * ("provenance.json" in made):
                os.chmod(tmp / name, mode)
                os.replace(tmp / name, self.path / name)  # the provenance last: it describes the tables beside it
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return result


def one_line(msg: Any) -> str:
    """A multi-line library message as one line (its lines joined by '; ')."""
    return "; ".join(ln.strip() for ln in str(msg).splitlines() if ln.strip())


def load_model(parameters: str | None):
    from models.parameters import DEFAULT_REGION, ParameterError, load_parameters

    try:
        return load_parameters(parameters or DEFAULT_REGION)
    except ParameterError as exc:
        raise CLIError(one_line(exc)) from exc


def load_portfolio_or_demo(path: str | None, params):
    """The given portfolio file, or the shipped 5,000-parcel Lishui demo portfolio."""
    from models.portfolio import PortfolioError, load_portfolio

    if path is None:
        from models.demo import demo_portfolio_path

        path = str(demo_portfolio_path())
    try:
        pf = load_portfolio(path, params)
    except PortfolioError as exc:
        first = exc.problems[0]
        more = f" (and {len(exc.problems) - 1} more problem(s); run `carbon-risk validate {path}` for all)" \
            if len(exc.problems) > 1 else ""
        raise CLIError(f"{first}{more}") from exc
    show_portfolio_warnings(pf, path)
    return pf


#: portfolio warnings an analysis command prints before pointing to ``validate`` for the rest
MAX_PORTFOLIO_WARNINGS_SHOWN = 3


def show_portfolio_warnings(pf, path: str, limit: int | None = MAX_PORTFOLIO_WARNINGS_SHOWN) -> None:
    """A validated portfolio's warnings (``Portfolio.warnings``: accepted, but likely a mistake) on stderr, each
    naming file, row, column and reason; at most ``limit`` of them (None: all) and then how many more."""
    warnings = tuple(getattr(pf, "warnings", ()) or ())
    shown = warnings if limit is None else warnings[:limit]
    for w in shown:
        click.echo(f"warning: {w}", err=True)
    if len(warnings) > len(shown):
        click.echo(f"warning: ... and {len(warnings) - len(shown)} more; run `carbon-risk validate {path}` for all",
                   err=True)


def portfolio_option(f: Callable) -> Callable:
    return click.option("--portfolio", "-p", "portfolio", type=click.Path(dir_okay=False), default=None,
                        help="Portfolio file (CSV, Parquet, xlsx, GeoJSON). Default: the shipped Lishui demo.")(f)


def parameters_option(f: Callable) -> Callable:
    return click.option("--parameters", "parameters", default=None, metavar="REGION|FILE",
                        help="Parameter set: a shipped region id or a YAML file. Default: lishui.")(f)


def format_option(f: Callable) -> Callable:
    return click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                        show_default=True, help="Output format on stdout.")(f)


#: the libraries' bad-input errors (module, class): a command should catch them and name the input, but one
#: that slips through is still bad input (exit 2, one line), not a failure
INPUT_ERRORS = (
    ("models.parameters", "ParameterError"), ("models.portfolio", "PortfolioError"), ("models._yaml", "DataFileError"),
    ("models.calibration", "CalibrationError"), ("models.perils.pine_wilt_landscape", "LandscapeError"),
    ("finance_engine.stress.scenarios", "ScenarioError"), ("finance_engine.stress.registry", "RegistryError"),
    ("finance_engine.stress.reverse", "ReverseStressError"), ("finance_engine.loan_terms", "LoanTermsError"),
    ("finance_engine.insurance", "InsuranceInputError"), ("finance_engine.price", "PriceModelError"),
)


def _input_error_types() -> tuple[type, ...]:
    out = []
    for module, name in INPUT_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)  # only modules already imported: nothing to load
        if isinstance(cls, type) and issubclass(cls, BaseException):
            out.append(cls)
    return tuple(out)


def run_guarded(group: click.Group, argv: list[str]) -> int:
    """Run the CLI: bad input -> one line + exit 2; unexpected failure -> one line + exit 1."""
    try:
        rv = group.main(args=argv, prog_name="carbon-risk", standalone_mode=False)
        # with standalone_mode=False click returns ctx.exit(n)'s code instead of raising
        if isinstance(rv, int) and not isinstance(rv, bool):
            return rv
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_FAILURE
    except click.UsageError as exc:
        click.echo(f"carbon-risk: {exc.format_message()}", err=True)
        return EXIT_BAD_INPUT
    except click.ClickException as exc:
        click.echo(f"carbon-risk: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except _input_error_types() as exc:  # a library's own bad-input error that no command caught
        click.echo(f"carbon-risk: error: {one_line(exc)}", err=True)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, never a traceback
        click.echo(f"carbon-risk: failed: {type(exc).__name__}: {exc}", err=True)
        return EXIT_FAILURE
    return EXIT_OK


class ProgressBar:
    """A one-line progress bar with ETA on stderr; silent when stderr is not a terminal."""

    def __init__(self, label: str, enabled: bool | None = None):
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._last = ""

    def __call__(self, p) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * p.fraction)
        eta = "" if p.eta_s is None else f" ETA {p.eta_s:5.1f}s"
        line = f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {p.chunks_done}/{p.chunks_total}{eta}"
        if line != self._last:
            sys.stderr.write(line)
            sys.stderr.flush()
            self._last = line
        if p.chunks_done == p.chunks_total:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._last = ""

    def note(self, msg: str) -> None:
        """A line on stderr (as :func:`note`) above the bar, which is drawn again below it."""
        if not self.enabled or not self._last:
            note(msg)
            return
        sys.stderr.write("\r" + " " * len(self._last.lstrip("\r")) + "\r" + msg + "\n" + self._last)
        sys.stderr.flush()


SCHEDULERS = ("processes", "threads", "warm", "local-cluster", "tcp://HOST:PORT")
_DASK_ADDRESS = re.compile(r"^(tcp|tls)://[^\s/:]+:\d{1,5}$")


def _scheduler(ctx: Any, param: Any, value: str | None) -> str | None:
    """``--scheduler``: one of :data:`SCHEDULERS` (``processes`` is the default, None to the engine)."""
    if value is None or value == "processes":
        return None
    if value in ("threads", "warm", "local-cluster") or _DASK_ADDRESS.match(value):
        return value
    raise click.BadParameter(f"{value!r} is not a scheduler; use processes, threads, warm, local-cluster or the "
                             "address of a Dask scheduler, tcp://HOST:PORT", ctx=ctx, param=param)


def crediting_options(prefix: str = "") -> Callable:
    """--crediting-start-year and --crediting-period-years: a project that began crediting before the run (the
    loan terms and engine overrides of the same names, ``finance_engine.loan_terms.CREDITING_TERMS``); ``prefix``
    starts each help text (what the options are for)."""
    def text(rest: str) -> str:
        return prefix + rest if prefix else rest[:1].upper() + rest[1:]

    def decorate(f: Callable) -> Callable:
        f = click.option("--crediting-period-years", type=click.IntRange(1, 100), default=None, metavar="YEARS",
                         help=text("the registered crediting period, its end verified too (default: the parameter "
                                   "file's; Lishui 40, the longest the MEE's 2023 CCER rules allow forestry)."))(f)
        return click.option("--crediting-start-year", type=click.IntRange(1900, 2200), default=None, metavar="YEAR",
                            help=text("the calendar year the projects began (or begin) crediting (default: the run's first "
                                      "year, 2026); earlier: fewer years of the crediting period left, verifications "
                                      "in their phase; later (at most 50 years): nothing credited before it, the "
                                      "first verification counting from the stock then."))(f)
    return decorate


def crediting_from_options(start_year: int | None, period_years: int | None) -> dict[str, int]:
    """The engine's crediting overrides the options set (none: empty)."""
    from finance_engine.loan_terms import crediting_overrides

    return crediting_overrides({"crediting_start_year": start_year, "crediting_period_years": period_years})


def crediting_option_names(message: str, given: Iterable[str] | None = None) -> str:
    """``message`` with the crediting terms' names as their options' (``--crediting-start-year``); ``given``: only
    those names (the others came from elsewhere, a terms file)."""
    from finance_engine.loan_terms import CREDITING_TERMS

    for key in CREDITING_TERMS if given is None else given:
        message = message.replace(key, "--" + key.replace("_", "-"))
    return message


def simulation_options(f: Callable) -> Callable:
    """--years --paths --seed --workers --chunk-paths --scheduler --carbon-method."""
    opts = [
        click.option("--years", type=click.IntRange(1, 200), default=30, show_default=True, help="Horizon in years."),
        click.option("--paths", type=click.IntRange(1, 10_000_000), default=1000, show_default=True,
                     help="Monte Carlo paths."),
        click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=2026, show_default=True),
        click.option("--carbon-method", type=click.Choice(["bef", "fang"]), default="bef", show_default=True),
        click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
                     help="Workers: local processes, or what --scheduler says."),
        click.option("--chunk-paths", type=click.IntRange(1, 1_000_000), default=None,
                     help="Paths per chunk (memory/speed only; results are identical). Default: sized from the "
                          "paths, parcels and workers, at most 4 million path-parcels a chunk (about 250 MB)."),
        click.option("--scheduler", default=None, callback=_scheduler, metavar="SCHEDULER",
                     help="Where the --workers run. processes (the default): local worker processes; threads: "
                          "threads in this process (one copy of the portfolio and set-up: the least memory for a "
                          "large portfolio); warm: worker processes kept alive between runs of this process; "
                          "local-cluster: a Dask cluster on this machine; tcp://HOST:PORT: a running Dask scheduler. "
                          "Results are identical on every one."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f
