"""Strict JSON for every file the library writes: no ``Infinity`` / ``NaN`` tokens.

Non-finite floats are written as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` (a zero-mean
site's log α is +∞), which :func:`loads` turns back into floats.
"""

from __future__ import annotations

import json
import math

_SPECIAL = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _clean(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def dumps(obj, **kwargs) -> str:
    """``json.dumps`` with non-finite floats as strings; raises on anything else non-standard."""
    return json.dumps(_clean(obj), allow_nan=False, **kwargs)


def _restore(obj):
    if isinstance(obj, str) and obj in _SPECIAL:
        return _SPECIAL[obj]
    if isinstance(obj, dict):
        return {k: _restore(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v) for v in obj]
    return obj


def loads(text: str):
    """Inverse of :func:`dumps`."""
    return _restore(json.loads(text))
