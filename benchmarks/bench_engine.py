"""Engine benchmarks (thin wrapper): ``python benchmarks/bench_engine.py [--cases ...]``.

The cases live in :mod:`finance_engine.bench` so that ``carbon-risk bench`` runs them too.
"""

from finance_engine.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
