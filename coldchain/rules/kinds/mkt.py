"""Mean kinetic temperature over a trailing window, against a limit.

Held time is accumulated in epoch-aligned buckets of ``window / buckets`` (15 min for 24 h with
the default 96 buckets). When data moves past a bucket's end, the bucket is closed and MKT is
evaluated at that bucket end over the last ``buckets`` buckets (the trailing window): if the
window has at least ``min_coverage`` of its time covered by recordings and the compartment has
been observed for a whole window, MKT above ``max_c`` opens (or extends) an excursion starting at
that bucket end; MKT at or below it closes the excursion at that bucket end.

Terms are stored relative to a fixed reference ``a_ref = -(dH/R) / T_max``: with contract
temperatures (-100..100 degC) and dH/R <= 30,000 K the exponent stays within +-200, so neither a
term nor a bucket sum can overflow or underflow to zero. The window sums are kept as running
sums (add the closed bucket, subtract the expired ones) and re-added exactly from the buckets
with ``math.fsum`` every ``buckets`` closes, so rounding drift cannot build up over long series.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any

from coldchain.rules.kinds.base import Rule, Track
from coldchain.rules.mkt import KELVIN
from coldchain.rules.profiles import MktRule
from coldchain.rules.readings import Observation

if TYPE_CHECKING:
    from coldchain.rules.evaluator import CompartmentEvaluator

__all__ = ["MktKind"]


class MktKind(Rule):
    __slots__ = (
        "bidx",
        "bms",
        "buckets",
        "cur_w",
        "cur_x",
        "first_ts",
        "k",
        "last_mkt",
        "limit",
        "min_w",
        "nb",
        "ref",
        "since_sync",
        "sw",
        "sx",
        "window",
        "x",
    )

    def __init__(self, spec: MktRule) -> None:
        super().__init__(spec.name, "mkt", spec.severity)
        self.limit = spec.max_c
        self.k = spec.dh_r_k
        self.ref = -self.k / (spec.max_c + KELVIN)
        self.nb = spec.buckets
        self.window = round(spec.window_h * 3_600_000)
        self.bms = self.window // self.nb
        self.window = self.bms * self.nb
        self.min_w = spec.min_coverage * self.window
        self.buckets: deque[tuple[int, float, float]] = deque()
        self.bidx = -1
        self.cur_w = 0.0
        self.cur_x = 0.0
        self.x = -1.0  # exp(a - ref) of the held mean temperature; < 0: none yet
        self.first_ts = -1
        self.last_mkt: float | None = None
        self.sw = 0.0  # running sums over ``buckets``
        self.sx = 0.0
        self.since_sync = 0

    def value(self) -> float | None:
        """MKT (degC) of the last evaluated window, or None."""
        return self.last_mkt

    def _finish(self, c: CompartmentEvaluator) -> None:
        idx = self.bidx
        b = self.buckets
        if self.cur_w > 0.0:
            b.append((idx, self.cur_w, self.cur_x))
            self.sw += self.cur_w
            self.sx += self.cur_x
        self.cur_w = 0.0
        self.cur_x = 0.0
        oldest = idx - self.nb
        dropped = 0.0
        while b and b[0][0] <= oldest:
            _, w, x = b.popleft()
            self.sw -= w
            self.sx -= x
            if x > dropped:
                dropped = x
        self.since_sync += 1
        # Re-add exactly every window, when empty, or when a large term just left the sum
        # (subtracting it would leave mostly rounding error in a small remainder).
        if self.since_sync >= self.nb or not b or self.sx < dropped * 1e-6:
            self.since_sync = 0
            self.sw = math.fsum(e[1] for e in b)
            self.sx = math.fsum(e[2] for e in b)
        at = (idx + 1) * self.bms
        sw = self.sw
        if sw <= 0.0 or sw < self.min_w or self.first_ts > at - self.window:
            return
        sx = self.sx
        if sx <= 0.0:
            return
        mkt = -self.k / (self.ref + math.log(sx / sw)) - KELVIN
        self.last_mkt = mkt
        tr = self.tr
        if mkt > self.limit:
            if tr is None:
                self._open(
                    c,
                    Track(
                        at,
                        self.severity,
                        c.now,
                        mkt,
                        mkt - self.limit,
                        0.0,
                        f"MKT over {self.window / 3_600_000:g} h above {self.limit:g} degC",
                    ),
                )
            elif mkt > (tr.peak if tr.peak is not None else -math.inf):
                tr.peak = mkt
                tr.over = mkt - self.limit
        elif tr is not None:
            self._close(c, at)

    def step(self, c: CompartmentEvaluator, obs: Observation, held: int, held_any: int) -> None:
        if held > 0 and self.x >= 0.0:
            t0 = c.ts
            bms = self.bms
            b0 = t0 // bms
            if b0 != self.bidx:
                if self.bidx >= 0:
                    self._finish(c)
                self.bidx = b0
            end = t0 + held
            boundary = (b0 + 1) * bms
            while end > boundary:
                part = boundary - t0
                self.cur_w += part
                self.cur_x += part * self.x
                self._finish(c)
                self.bidx += 1
                t0 = boundary
                boundary += bms
            part = end - t0
            self.cur_w += part
            self.cur_x += part * self.x
        m = obs.mean
        if m is not None:
            if self.first_ts < 0:
                self.first_ts = obs.ts
            self.x = math.exp(-self.k / (m + KELVIN) - self.ref)
            b = obs.ts // self.bms
            if self.bidx >= 0 and b != self.bidx:
                self._finish(c)
                self.bidx = b

    def dump(self) -> dict[str, Any]:
        d = super().dump()
        d["s"] = [
            [list(e) for e in self.buckets],
            self.bidx,
            self.cur_w,
            self.cur_x,
            self.x,
            self.first_ts,
            self.last_mkt,
            self.sw,
            self.sx,
            self.since_sync,
        ]
        return d

    def load(self, d: dict[str, Any]) -> None:
        super().load(d)
        (
            buckets,
            self.bidx,
            self.cur_w,
            self.cur_x,
            self.x,
            self.first_ts,
            self.last_mkt,
            self.sw,
            self.sx,
            self.since_sync,
        ) = d["s"]
        self.buckets = deque((int(i), float(w), float(x)) for i, w, x in buckets)
