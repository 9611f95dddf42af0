"""Mean kinetic temperature (USP <1079.2>), computed stably.

    MKT = (dH/R) / ( -ln( sum_i w_i exp(-(dH/R) / T_i) / sum_i w_i ) )       [T in kelvin]

with w_i the time each temperature was held (sample-and-hold). ``exp(-(dH/R)/T)`` underflows for
cold temperatures (10,000 K / 200 K = 50: e^-50 ~ 2e-22, fine; but sums of many tiny terms lose
relative precision and a naive formula breaks for dH/R of 1e5 K), so terms are taken relative to a
reference: with ``a_i = -(dH/R)/T_i`` and ``m = max a_i``,

    ln(sum w_i e^{a_i} / W) = m + ln(sum w_i e^{a_i - m} / W)           (log-sum-exp)

which never overflows or underflows the dominant term.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["DEFAULT_DH_R_K", "KELVIN", "MktAccumulator", "mean_kinetic_temperature"]

DEFAULT_DH_R_K = 10_000.0  # USP <1079.2>: dH = 83.144 kJ/mol, R = 8.3144 J/(mol K)
KELVIN = 273.15


def mean_kinetic_temperature(
    temps_c: Sequence[float],
    weights: Sequence[float] | None = None,
    dh_r_k: float = DEFAULT_DH_R_K,
) -> float:
    """MKT in degC of ``temps_c``, each held for ``weights`` (any time unit; default equal)."""
    if not temps_c:
        raise ValueError("MKT of an empty series")
    ws: Iterable[float] = weights if weights is not None else [1.0] * len(temps_c)
    pairs = [(w, -dh_r_k / (t + KELVIN)) for t, w in zip(temps_c, ws, strict=True) if w > 0.0]
    if not pairs:
        raise ValueError("MKT with zero total weight")
    m = max(a for _, a in pairs)
    total_w = math.fsum(w for w, _ in pairs)
    s = math.fsum(w * math.exp(a - m) for w, a in pairs)
    ln_mean = m + math.log(s / total_w)
    return -dh_r_k / ln_mean - KELVIN


class MktAccumulator:
    """Running MKT: add (temperature, weight) pieces, read ``value`` at any time.

    Keeps ``sum w * exp(a - ref)`` with a fixed reference ``ref = -(dH/R) / T_ref``; when a new
    term would exceed the reference by more than 50 e-folds the sum is rescaled, so the running
    sum stays within a few orders of magnitude of its largest term (stable for arbitrarily long
    series, unlike a naive sum of exp(-dH/RT)).
    """

    __slots__ = ("dh_r_k", "ref", "sum_w", "sum_x")

    def __init__(self, dh_r_k: float = DEFAULT_DH_R_K, ref_c: float = 25.0) -> None:
        self.dh_r_k = dh_r_k
        self.ref = -dh_r_k / (ref_c + KELVIN)
        self.sum_w = 0.0
        self.sum_x = 0.0

    def add(self, temp_c: float, weight: float) -> None:
        if weight <= 0.0:
            return
        a = -self.dh_r_k / (temp_c + KELVIN)
        if a - self.ref > 50.0:
            self.sum_x *= math.exp(self.ref - a)
            self.ref = a
        self.sum_x += weight * math.exp(a - self.ref)
        self.sum_w += weight

    @property
    def value(self) -> float | None:
        if self.sum_w <= 0.0:
            return None
        return -self.dh_r_k / (self.ref + math.log(self.sum_x / self.sum_w)) - KELVIN
