"""Mean kinetic temperature (MKT): the formula and what each record weighs. Pure.

``T = (ΔH/R) / −ln(Σ wᵢ·e^(−ΔH/(R·Tᵢ)) / Σ wᵢ)``, temperatures in kelvin (USP ⟨1160⟩; the
domain notes' "Mean kinetic temperature"). ``server/climate/history.py`` makes the same sums in
SQL over a storeroom's records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

KELVIN = 273.15
#: ΔH/R in kelvin: ΔH 83.144 kJ/mol over the gas constant (USP); ``[climate]`` may change it.
DELTA_H_OVER_R_K = 10_000.0
#: A record stands for the time until its sensor's next record, never more than this: the
#: longest the record policy lets two in-range records be apart (``record_in_range_s`` ≤ 30 min),
#: so a sensor that was silent for a day is not taken to have held its last value all day.
MAX_WEIGHT_S = 1800.0


def mkt_c(
    temperatures_c: Sequence[float],
    weights: Sequence[float] | None = None,
    delta_h_over_r_k: float = DELTA_H_OVER_R_K,
) -> float:
    """Mean kinetic temperature (°C) of ``temperatures_c``, each weighted by the time it stands
    for (all alike when ``weights`` is None):
    ``T = (ΔH/R) / −ln(Σ wᵢ·e^(−ΔH/(R·Tᵢ)) / Σ wᵢ)``, temperatures in kelvin."""
    if not temperatures_c:
        raise ValueError("no temperatures")
    ws = [1.0] * len(temperatures_c) if weights is None else [float(w) for w in weights]
    if len(ws) != len(temperatures_c):
        raise ValueError("one weight per temperature")
    if any(w < 0 for w in ws) or sum(ws) <= 0:
        raise ValueError("weights must be ≥ 0 and not all 0")
    return mkt_from_sums(
        sum(w * boltzmann(t, delta_h_over_r_k) for t, w in zip(temperatures_c, ws, strict=True)),
        sum(ws),
        delta_h_over_r_k,
    )


def boltzmann(temperature_c: float, delta_h_over_r_k: float) -> float:
    """``e^(−ΔH/(R·T))`` with T in kelvin: one record's share of the MKT sum."""
    return math.exp(-delta_h_over_r_k / (temperature_c + KELVIN))


def mkt_from_sums(weighted: float, total_weight: float, delta_h_over_r_k: float) -> float:
    """The MKT (°C) from ``Σ wᵢ·e^(−ΔH/(R·Tᵢ))`` and ``Σ wᵢ``."""
    return delta_h_over_r_k / -math.log(weighted / total_weight) - KELVIN


def record_weights(
    times: Sequence[datetime], end: datetime, cap_s: float = MAX_WEIGHT_S
) -> list[float]:
    """Seconds each of one sensor's records (in time order) stands for in a window ending at
    ``end``: until the next record, or the window's end for the last, at most ``cap_s``."""
    if not times:
        return []
    following = [*times[1:], end]
    return [min((n - t).total_seconds(), cap_s) for t, n in zip(times, following, strict=True)]


def summary_weight(count: int, span_s: float, cap_s: float = MAX_WEIGHT_S) -> float:
    """Seconds a summary of ``count`` records over ``span_s`` (first to last) stands for: each
    record the mean interval between them, at most ``cap_s`` each (one record alone: ``cap_s``)."""
    if count <= 1:
        return cap_s
    return min(count * cap_s, span_s * count / (count - 1))
