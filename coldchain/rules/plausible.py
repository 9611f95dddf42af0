"""Implausible probe values: evidence of a sensor fault, never of the product's temperature.

A probe value outside the profile's ``implausible`` limits (a DS18B20's 85.0 degC power-on value,
a disconnected thermistor's -127) is dropped from the observation before the temperature rules,
statistics, MKT and the trace see it; only the ``implausible`` sensor-fault rule reads the raw
value (docs/rules.md, sections 1 and 4.9).
"""

from __future__ import annotations

from coldchain.rules.profiles import Profile, SensorFaultRule
from coldchain.rules.readings import CompartmentSpec, Observation, _derive

__all__ = ["drop_implausible", "plausible_limits"]


def plausible_limits(profile: Profile) -> tuple[float, float] | None:
    """``(min_c, max_c)`` a probe value must lie in (inclusive) to count as a temperature under
    ``profile``: the intersection of its ``implausible`` sensor-fault rules, None without one."""
    lo = hi = None
    for spec in profile.rules:
        if isinstance(spec, SensorFaultRule) and spec.check == "implausible":
            lo = spec.min_c if lo is None else max(lo, spec.min_c)
            hi = spec.max_c if hi is None else min(hi, spec.max_c)
    return None if lo is None or hi is None else (lo, hi)


def drop_implausible(
    spec: CompartmentSpec, obs: Observation, min_c: float, max_c: float
) -> Observation:
    """``obs`` with every probe value outside ``[min_c, max_c]`` removed (as if not reported) and
    the control values, extremes and spread derived again from what is left."""
    temps = tuple(None if v is None or v < min_c or v > max_c else v for v in obs.temps)
    hi, lo, mean, amax, amin, spread = _derive(spec, temps)
    return Observation(
        obs.ts,
        temps,
        hi,
        lo,
        mean,
        amax,
        amin,
        spread,
        obs.door,
        obs.setpoint,
        obs.defrost,
        obs.stationary,
        obs.custody,
    )
