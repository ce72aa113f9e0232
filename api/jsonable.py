"""JSON-ready copies of results: NaN/inf -> null, numpy scalars -> Python, tuples -> lists.

A light module (numpy and pandas only) so the compute pool's worker processes can use it without
importing the database layer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def clean(obj: Any) -> Any:
    """JSON-ready copy of ``obj``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    return str(obj)
