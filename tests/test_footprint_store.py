"""The store on disk of pine wilt landscape footprints: read back bit for bit by the next process,
never served to code that would compute another one, robust to broken files, bounded in size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import models.perils.pine_wilt as pw
from models.perils import footprint_store as store
from models.perils.pine_wilt import PineWilt
from models.rng import KeyedRandom


@pytest.fixture()
def on_disk(tmp_path, monkeypatch):
    """A store of its own, and an empty process-wide cache."""
    monkeypatch.setenv("CRE_FOOTPRINT_STORE", str(tmp_path / "fp"))
    monkeypatch.setattr(pw, "_FOOTPRINTS", pw.OrderedDict())
    monkeypatch.setattr(pw, "_FOOTPRINT_BYTES", 0)
    monkeypatch.setattr(store, "_writes", True)
    return tmp_path / "fp"


def _rnd(seed=5, start=0, n=64):
    return KeyedRandom(seed, np.arange(start, start + n), np.empty(0, dtype=np.uint64))


def test_store_is_off_in_the_tests_and_where_named(monkeypatch, tmp_path):
    assert store.store_dir() is None  # tests/conftest.py turns it off
    monkeypatch.setenv("CRE_FOOTPRINT_STORE", str(tmp_path))
    assert store.store_dir() == tmp_path
    monkeypatch.delenv("CRE_FOOTPRINT_STORE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert store.store_dir() == tmp_path / "cache" / "carbon-risk-engine" / "footprints"


def test_a_stored_footprint_serves_the_next_process_bit_for_bit(params, on_disk, monkeypatch):
    peril = PineWilt.for_landscape(params.perils["pine_wilt"], params)
    computed = peril.footprint(_rnd(), 12)
    files = sorted(on_disk.rglob("*.npy"))
    assert len(files) == 2  # two 32-path blocks
    # the next process: an empty cache, and no computing allowed
    monkeypatch.setattr(pw, "_FOOTPRINTS", pw.OrderedDict())
    monkeypatch.setattr(PineWilt, "compute_footprint", lambda *a: pytest.fail("computed again"))
    again = PineWilt.for_landscape(params.perils["pine_wilt"], params).footprint(_rnd(), 12)
    assert np.array_equal(again, computed) and again.dtype == np.int16
    cells = np.array([3, 40, 2000])
    assert np.array_equal(peril.footprint(_rnd(), 12, cells), computed[:, cells])


def test_another_seed_horizon_landscape_or_source_is_another_block(params, on_disk, monkeypatch):
    peril = PineWilt.for_landscape(params.perils["pine_wilt"], params)
    token = peril._grid_token
    base = store.block_key(token, 5, 0, 32, 12)
    assert len({base, store.block_key(token, 6, 0, 32, 12), store.block_key(token, 5, 32, 32, 12),
                store.block_key(token, 5, 0, 32, 13), store.block_key(token[::-1], 5, 0, 32, 12)}) == 5
    # an edit to the code of the cell process, or a numpy / numba upgrade, invalidates every stored footprint
    monkeypatch.setattr(store, "source_digest", lambda: "0" * 64)
    assert store.block_key(token, 5, 0, 32, 12) != base
    monkeypatch.undo()
    import numba

    store.source_digest.cache_clear()
    monkeypatch.setattr(numba, "__version__", "0.0.0")
    assert store.block_key(token, 5, 0, 32, 12) != base
    monkeypatch.undo()
    store.source_digest.cache_clear()
    assert store.block_key(token, 5, 0, 32, 12) == base
    from models.perils import pine_wilt_landscape

    for module in (pw, pine_wilt_landscape):
        rel = Path(module.__file__).resolve().relative_to(Path(store.__file__).resolve().parents[1]).as_posix()
        assert rel in store.SOURCES


def test_broken_or_foreign_files_are_ignored_and_recomputed(params, on_disk, monkeypatch):
    peril = PineWilt.for_landscape(params.perils["pine_wilt"], params)
    good = peril.footprint(_rnd(n=32), 8)
    (f,) = on_disk.rglob("*.npy")
    for broken in (b"not a numpy file", None):
        if broken is None:  # a well-formed file of the wrong shape
            np.save(f, np.zeros((31, 5), dtype=np.int16))
        else:
            f.write_bytes(broken)
        monkeypatch.setattr(pw, "_FOOTPRINTS", pw.OrderedDict())
        assert np.array_equal(peril.footprint(_rnd(n=32), 8), good)
        assert np.array_equal(np.load(f), good)  # rewritten


def test_an_unwritable_store_only_costs_time(params, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the store's folder would be")
    monkeypatch.setenv("CRE_FOOTPRINT_STORE", str(blocker / "fp"))
    monkeypatch.setattr(pw, "_FOOTPRINTS", pw.OrderedDict())
    monkeypatch.setattr(store, "_writes", True)
    peril = PineWilt.for_landscape(params.perils["pine_wilt"], params)
    with caplog.at_level("WARNING", logger="carbon_risk.footprints"):
        assert peril.footprint(_rnd(n=96), 4).shape == (96, peril.grid.n_cells)
    # three blocks failed to store: one warning
    assert caplog.text.count("could not store pine wilt footprints") == 1


def test_prune_keeps_the_most_recently_used(tmp_path):
    sub = tmp_path / "ab"
    sub.mkdir()
    for i in range(5):
        p = sub / f"{i}.npy"
        np.save(p, np.zeros(1000, dtype=np.int16))
        t = 1_000_000 + i
        import os

        os.utime(p, (t, t))
    size = (sub / "0.npy").stat().st_size
    left = store.prune(tmp_path, limit=2 * size)
    assert left == 2 * size and sorted(p.name for p in sub.iterdir()) == ["3.npy", "4.npy"]


def test_a_fresh_process_reads_the_store(params, on_disk):
    """Across real processes: the second one reads what the first stored (its footprint equals it)."""
    code = ("import numpy as np, models.perils.pine_wilt as pw; from models.parameters import load_parameters;"
            "from models.rng import KeyedRandom; p = load_parameters();"
            "peril = pw.PineWilt.for_landscape(p.perils['pine_wilt'], p);"
            "called = []; orig = pw.PineWilt.compute_footprint;"
            "pw.PineWilt.compute_footprint = lambda self, r, y: called.append(1) or orig(self, r, y);"
            "fp = peril.footprint(KeyedRandom(9, np.arange(32), np.empty(0, np.uint64)), 6);"
            "print(len(called), int(fp.astype(np.int64).sum()))")
    env = {**__import__("os").environ, "CRE_FOOTPRINT_STORE": str(on_disk)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    n1, s1 = first.stdout.split()
    n2, s2 = second.stdout.split()
    assert (n1, n2) == ("1", "0") and s1 == s2


def test_a_read_only_process_reads_but_does_not_write(params, on_disk, monkeypatch):
    """As a service's compute workers after their warm-up: the warm seed is read, other seeds are not stored."""
    from api.compute import WARM_SEED, WARM_YEARS, _init_worker

    monkeypatch.setattr("api.compute._W", {})
    monkeypatch.setattr("finance_engine._workers.exit_with_parent", lambda: None)
    _init_worker(0)  # the service's own process (no pool): writes stay on
    assert store._writes is True
    monkeypatch.setattr("api.compute._W", {})
    _init_worker(32, True)  # a pool worker warms (and stores) the default seed, then turns writes off
    assert store._writes is False
    warm = sorted(on_disk.rglob("*.npy"))
    assert len(warm) == 1
    monkeypatch.setattr(pw, "_FOOTPRINTS", pw.OrderedDict())
    peril = PineWilt.for_landscape(params.perils["pine_wilt"], params)
    peril.footprint(_rnd(seed=77, n=32), 5)  # a request's own seed: computed, not stored
    assert sorted(on_disk.rglob("*.npy")) == warm
    monkeypatch.setattr(PineWilt, "compute_footprint", lambda *a: pytest.fail("computed again"))
    # the warm-up stored the epidemic of the service's runs: the default switches' spread draws
    from models.dynamics import SimulationSwitches, spread_draws

    peril.set_spread(spread_draws(params, SimulationSwitches()))
    assert peril.spread is not None
    assert peril.footprint(KeyedRandom(WARM_SEED, np.arange(32), np.empty(0, np.uint64)), WARM_YEARS).shape[0] == 32


def test_an_empty_or_stale_file_and_the_size_bound(params, on_disk, monkeypatch):
    """An empty block (a crash between create and write) is ignored; a crashed writer's old temporary
    file goes at the next prune; a process prunes at its first write."""
    import os
    import time

    peril = PineWilt.for_landscape(params.perils["pine_wilt"], params)
    good = peril.footprint(_rnd(n=32), 3)
    (f,) = on_disk.rglob("*.npy")
    f.write_bytes(b"")
    monkeypatch.setattr(pw, "_FOOTPRINTS", pw.OrderedDict())
    assert np.array_equal(peril.footprint(_rnd(n=32), 3), good)
    tmp = f.with_name(".x.npy.1.2.tmp")
    tmp.write_bytes(b"partial")
    old = time.time() - 2 * store.STALE_TMP_SECONDS
    os.utime(tmp, (old, old))
    fresh = f.with_name(".y.npy.1.2.tmp")
    fresh.write_bytes(b"being written")
    store.prune(on_disk)
    assert not tmp.exists() and fresh.exists() and f.exists()
    # the first write of a process prunes: a store already over its bound shrinks
    monkeypatch.setenv("CRE_FOOTPRINT_STORE_MB", "0")
    monkeypatch.setattr(store, "_writes_since_prune", 0)
    monkeypatch.setattr(pw, "_FOOTPRINTS", pw.OrderedDict())
    peril.footprint(_rnd(seed=6, n=32), 3)
    assert list(on_disk.rglob("*.npy")) == []


def test_footprints_command_shows_prunes_and_clears(params, on_disk):
    import json

    from click.testing import CliRunner

    from api.cli import cli

    PineWilt.for_landscape(params.perils["pine_wilt"], params).footprint(_rnd(n=64), 3)
    out = CliRunner().invoke(cli, ["footprints", "--format", "json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["folder"] == str(on_disk) and info["blocks"] == 2 and info["bytes"] > 0
    out = CliRunner().invoke(cli, ["footprints"])
    assert "2 blocks" in out.output
    out = CliRunner().invoke(cli, ["footprints", "--clear"])
    assert out.exit_code == 0 and "cleared" in out.output and "0 blocks" in out.output
    assert list(on_disk.rglob("*.npy")) == []


def test_footprints_command_when_the_store_is_off():
    from click.testing import CliRunner

    from api.cli import cli

    out = CliRunner().invoke(cli, ["footprints"])
    assert out.exit_code == 0 and "off" in out.output
