"""The telematics device: sequence numbers, device clock, on-device buffer, backlog upload,
duplicate publishes. Turns what an asset measured into MQTT messages at publish times.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from coldchain.contract.topics import device_topic
from simulators.scenario import Fault

__all__ = ["Device", "DeviceCounters", "SimMessage", "format_ts"]

MessageKind = Literal["telemetry", "events", "status"]


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One MQTT publish of the simulation, at simulated time ``time`` (aware UTC)."""

    time: datetime
    topic: str
    payload: bytes
    qos: int
    retain: bool
    device_id: str
    kind: MessageKind
    # Seconds since the simulation start, for ordering without datetime arithmetic.
    t_s: float


@dataclass(slots=True)
class DeviceCounters:
    samples: int = 0  # telemetry samples taken (each appears once in the stream, dups aside)
    telemetry_messages: int = 0
    batch_messages: int = 0
    backlog_samples: int = 0
    duplicate_messages: int = 0
    events: int = 0
    seqs: list[int] = field(default_factory=list)


def format_ts(start: datetime, t_s: float) -> str:
    """RFC 3339 UTC with milliseconds, the form devices send."""
    when = start + timedelta(milliseconds=round(t_s * 1000.0))
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Device:
    """One device's stream. Callers emit in non-decreasing time; so does the output."""

    def __init__(
        self,
        device_id: str,
        start: datetime,
        duration_s: float,
        faults: tuple[Fault, ...],
        rng: random.Random,
        *,
        status: bool = True,
    ) -> None:
        self.device_id = device_id
        self.start = start
        self.duration_s = duration_s
        self.counters = DeviceCounters()
        self._rng = rng
        self._skews = [f for f in faults if f.kind == "clock_skew"]
        self._dups = [f for f in faults if f.kind == "duplicate_publish"]
        self._gaps = sorted(
            (f for f in faults if f.kind == "coverage_loss"), key=lambda f: f.start_s
        )
        self._seq = 0
        self._event_seq = 0
        self._buffer: list[dict[str, Any]] = []
        self._buffered_events: list[bytes] = []
        self._restore_at: float | None = None
        self._gap: Fault | None = None
        self._telemetry_topic = device_topic(device_id, "telemetry")
        self._events_topic = device_topic(device_id, "events")
        self._online_sent = not status

    def device_ts(self, t_s: float) -> str:
        offset = sum(f.offset_s or 0.0 for f in self._skews if f.active(t_s))
        return format_ts(self.start, t_s + offset)

    def offline(self, t_s: float) -> bool:
        """True while there is no coverage; remembers when the backlog will go up."""
        if self._gap is None:
            for f in self._gaps:
                if f.active(t_s):
                    self._gap = f
                    self._restore_at = min(f.end_s + f.upload_delay_s, self.duration_s)
                    break
        return self._restore_at is not None and t_s < self._restore_at

    def _msg(self, t_s: float, topic: str, payload: bytes, kind: MessageKind) -> SimMessage:
        return SimMessage(
            time=self.start + timedelta(seconds=t_s),
            topic=topic,
            payload=payload,
            qos=1,
            retain=False,
            device_id=self.device_id,
            kind=kind,
            t_s=t_s,
        )

    def _maybe_dup(self, msg: SimMessage, out: list[SimMessage]) -> None:
        out.append(msg)
        for f in self._dups:
            if f.active(msg.t_s) and self._rng.random() < f.probability:
                # QoS 1 redelivery after a lost PUBACK: the very same bytes again.
                out.append(msg)
                self.counters.duplicate_messages += 1
                return

    def _status(self, t_s: float, out: list[SimMessage]) -> None:
        if self._online_sent:
            return
        self._online_sent = True
        payload = _dumps(
            {"v": 1, "device_id": self.device_id, "state": "online", "ts": self.device_ts(t_s)}
        )
        topic = device_topic(self.device_id, "status")
        out.append(
            SimMessage(
                time=self.start + timedelta(seconds=t_s),
                topic=topic,
                payload=payload,
                qos=1,
                retain=True,
                device_id=self.device_id,
                kind="status",
                t_s=t_s,
            )
        )

    def _flush(self, out: list[SimMessage]) -> None:
        """Coverage is back: upload the backlog oldest first in ``samples`` batches, then events."""
        assert self._restore_at is not None and self._gap is not None
        at = self._restore_at
        batch_max = self._gap.batch_max
        for i in range(0, len(self._buffer), batch_max):
            chunk = self._buffer[i : i + batch_max]
            payload = _dumps({"v": 1, "device_id": self.device_id, "samples": chunk})
            self.counters.telemetry_messages += 1
            self.counters.batch_messages += 1
            self.counters.backlog_samples += len(chunk)
            self._maybe_dup(self._msg(at, self._telemetry_topic, payload, "telemetry"), out)
        for payload in self._buffered_events:
            self._maybe_dup(self._msg(at, self._events_topic, payload, "events"), out)
        self._buffer.clear()
        self._buffered_events.clear()
        self._restore_at = None
        self._gap = None

    def _catch_up(self, t_s: float, out: list[SimMessage]) -> None:
        self._status(t_s, out)
        if self._restore_at is not None and t_s >= self._restore_at:
            self._flush(out)

    def sample(self, t_s: float, body: dict[str, Any]) -> list[SimMessage]:
        """A telemetry sample taken at t_s: published now, or buffered while offline."""
        out: list[SimMessage] = []
        self._catch_up(t_s, out)
        sample = {"ts": self.device_ts(t_s), "seq": self._seq, **body}
        self.counters.seqs.append(self._seq)
        self._seq += 1
        self.counters.samples += 1
        if self.offline(t_s):
            self._buffer.append(sample)
            return out
        payload = _dumps({"v": 1, "device_id": self.device_id, **sample})
        self.counters.telemetry_messages += 1
        self._maybe_dup(self._msg(t_s, self._telemetry_topic, payload, "telemetry"), out)
        return out

    def event(self, t_s: float, body: dict[str, Any]) -> list[SimMessage]:
        """An event at t_s (custody scan, door, alarm), with the device's event sequence."""
        out: list[SimMessage] = []
        self._catch_up(t_s, out)
        payload = _dumps(
            {
                "v": 1,
                "device_id": self.device_id,
                "ts": self.device_ts(t_s),
                "seq": self._event_seq,
                **body,
            }
        )
        self._event_seq += 1
        self.counters.events += 1
        if self.offline(t_s):
            self._buffered_events.append(payload)
            return out
        self._maybe_dup(self._msg(t_s, self._events_topic, payload, "events"), out)
        return out

    def finish(self) -> list[SimMessage]:
        """End of the simulation: a backlog still waiting goes up at the last moment."""
        out: list[SimMessage] = []
        if self._restore_at is not None and (self._buffer or self._buffered_events):
            self._restore_at = min(self._restore_at, self.duration_s)
            self._flush(out)
        return out
