"""Device clocks: clock skew as evidence on the device, and forward clock jumps.

Pure: the caller supplies each live message's device time and its receive time on the ingest
clock (docs/rules.md section 4.10 has the rule and a worked example). Delays only ever make
``offset = device time - receive time`` smaller, which gives the two asymmetric tests:

* *ahead* - ``offset > tolerance`` - is proved by a single message;
* *behind* - ``offset < R - tolerance`` - is judged against the fleet's reference ``R`` (the
  median offset of the devices heard live recently, capped at 0), so a delay every device
  suffers (an ingest backlog, a replay) is not taken for a slow clock.

A run of messages beyond the tolerance on one side that lasts ``persist_ms`` of receive time
(and ``min_messages``) opens a ``clock_skew`` record (an ``Excursion`` with the device id in
``compartment_id``); the first message back within the tolerance closes it. A message whose
offset exceeds the device's known clock by more than the tolerance is a forward jump of the
device clock: its size goes to the compartments' data-gap clocks (a jump is not missing data).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from coldchain.rules.evaluator import Change
from coldchain.rules.excursion import Excursion

__all__ = ["ClockReport", "ClockWatch"]

RULE = "clock_skew"
_FRESH_MS = 1_000  # the reference used to judge a clock slow is at most this old


@dataclass(frozen=True, slots=True)
class ClockReport:
    """What one live message said about its device's clock.

    ``offset_ms`` = device time - receive time; ``jump_ms`` > 0 when the device clock jumped
    forward just before this message; ``changes``: ``clock_skew`` opened / closed.
    """

    offset_ms: int
    jump_ms: int = 0
    changes: list[Change] = field(default_factory=list)


class _Device:
    __slots__ = (
        "asset",
        "best",
        "detected",
        "offset",
        "opened",
        "recv",
        "ref",
        "run_dev",
        "run_n",
        "run_recv",
        "side",
    )

    def __init__(self, asset: str) -> None:
        self.asset = asset
        self.recv = -1  # receive time of the last live message
        self.offset = 0  # its offset
        self.side = 0  # current run: +1 ahead, -1 behind, 0 none
        self.run_dev = -1  # device time of the run's first message
        self.run_recv = -1  # its receive time
        self.run_n = 0
        self.best = 0  # largest offset in the run: the least delayed message
        self.opened = False  # the run is an open clock_skew record
        self.detected = 0
        self.ref = 0  # the reference when it opened

    def dump(self) -> list[Any]:
        return [
            self.asset,
            self.recv,
            self.offset,
            self.side,
            self.run_dev,
            self.run_recv,
            self.run_n,
            self.best,
            self.opened,
            self.detected,
            self.ref,
        ]

    @classmethod
    def load(cls, raw: list[Any]) -> _Device:
        d = cls(str(raw[0]))
        (
            d.recv,
            d.offset,
            d.side,
            d.run_dev,
            d.run_recv,
            d.run_n,
            d.best,
            d.opened,
            d.detected,
            d.ref,
        ) = (int(raw[1]), int(raw[2]), int(raw[3]), int(raw[4]), int(raw[5]), int(raw[6]),
             int(raw[7]), bool(raw[8]), int(raw[9]), int(raw[10]))  # fmt: skip
        return d


class ClockWatch:
    """Per-device clock state for a fleet. Not thread-safe (one per engine).

    Defaults (docs/rules.md 4.10): tolerance 120 s, a run must last 15 min of receive time and
    5 messages, the reference is the median over devices heard live in the last 10 min when
    there are at least 3 of them (recomputed once a minute of receive time).
    """

    def __init__(
        self,
        *,
        tolerance_ms: int = 120_000,
        persist_ms: int = 900_000,
        min_messages: int = 5,
        window_ms: int = 600_000,
        min_fleet: int = 3,
    ) -> None:
        self.tolerance_ms = tolerance_ms
        self.persist_ms = persist_ms
        self.min_messages = min_messages
        self.window_ms = window_ms
        self.min_fleet = min_fleet
        self._devices: dict[str, _Device] = {}
        self._ref = 0
        self._ref_at: int | None = None
        # Set by a caller that sees only part of the fleet (a rules worker owns a partition):
        # the reference as the receiving ingest process computed it over every device it heard.
        self.external_reference_ms: int | None = None

    def reference_ms(self, received_ms: int, max_age_ms: int = 60_000) -> int:
        """The fleet's reference offset at ``received_ms`` (<= 0; 0 with too few devices),
        recomputed when older than ``max_age_ms`` of receive time (``external_reference_ms``
        instead, when set)."""
        if self.external_reference_ms is not None:
            self._ref = min(0, self.external_reference_ms)
            return self._ref
        at = self._ref_at
        if at is None or received_ms - at >= max_age_ms or received_ms < at:
            since = received_ms - self.window_ms
            recent = [d.offset for d in self._devices.values() if d.recv >= since]
            ref = round(statistics.median(recent)) if len(recent) >= self.min_fleet else 0
            self._ref, self._ref_at = min(0, ref), received_ms
        return self._ref

    def observe(
        self, asset_id: str, device_id: str, device_ms: int, received_ms: int, now_ms: int
    ) -> ClockReport:
        """One live (single-sample) message: device time ``device_ms``, received at
        ``received_ms`` (ingest clock); ``now_ms`` becomes ``detected_ms`` of what opens."""
        d = self._devices.get(device_id)
        if d is None:
            d = self._devices[device_id] = _Device(asset_id)
        d.asset = asset_id
        offset = device_ms - received_ms
        ref = self.reference_ms(received_ms)
        d.recv, d.offset = received_ms, offset
        tol = self.tolerance_ms
        # What the device clock is known to read: an ahead run is proved message by message, a
        # behind run only once it is an open record (before that it may be a burst of delays).
        known = d.best if (d.side > 0 or d.opened) else 0
        jump = offset - known if offset > known + tol else 0
        if offset < ref - tol:
            # Judging a clock slow needs the fleet's reference as of now, not a minute ago: a
            # delay every device suffers moves it within seconds.
            ref = self.reference_ms(received_ms, _FRESH_MS)
        side = 1 if offset > tol else (-1 if offset < ref - tol else 0)
        changes: list[Change] = []
        if jump or side != d.side:
            if d.opened:
                changes.append(Change("closed", self._record(device_id, d, device_ms)))
            d.side, d.opened = side, False
            d.run_dev, d.run_recv, d.run_n, d.best = device_ms, received_ms, 1, offset
        elif side:
            d.run_n += 1
            if offset > d.best:
                d.best = offset
        if (
            d.side
            and not d.opened
            and received_ms - d.run_recv >= self.persist_ms
            and d.run_n >= self.min_messages
            # A slow clock: even the run's least delayed message is behind the fleet now.
            and (d.side > 0 or d.best < self.reference_ms(received_ms, _FRESH_MS) - tol)
        ):
            d.opened, d.detected, d.ref = True, now_ms, self._ref if d.side < 0 else 0
            changes.append(Change("opened", self._record(device_id, d, None)))
        return ClockReport(offset, jump, changes)

    def _record(self, device_id: str, d: _Device, end_ms: int | None) -> Excursion:
        if d.side > 0:
            what = f"{round(d.best / 1000)} s ahead of"
        else:
            what = f"{round((d.ref - d.best) / 1000)} s behind"
        return Excursion(
            asset_id=d.asset,
            compartment_id=device_id,
            rule=RULE,
            kind="clock_skew",
            severity="warning",
            status="open" if end_ms is None else "closed",
            start_ms=d.run_dev,
            end_ms=end_ms,
            detected_ms=d.detected,
            detail=f"device {device_id} clock {what} the ingest clock (receive time)",
        )

    def open_excursions(self) -> list[Excursion]:
        return [self._record(k, d, None) for k, d in sorted(self._devices.items()) if d.opened]

    def dump(self) -> dict[str, Any]:
        """JSON-able state (the ``devices`` part of an engine checkpoint)."""
        return {k: d.dump() for k, d in sorted(self._devices.items())}

    def load(self, data: dict[str, Any]) -> None:
        self._devices = {str(k): _Device.load(v) for k, v in data.items()}
        self._ref_at = None
