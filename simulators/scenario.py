"""The scenario file: fleet, routes, shipments and faults of one run (YAML, docs/simulators.md).

Times in the file are offsets from the simulation start, written ``90s``, ``25m``, ``1h30m``,
``2d`` or as plain seconds; in Python they are floats named ``*_s``. Loading errors name the file,
the field path and the offending value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from coldchain.contract.telemetry import MAX_BATCH_SAMPLES
from coldchain.exceptions import ColdchainError
from coldchain.fleet import Asset, Compartment, Fleet, Location, SensorSpec
from coldchain.identifiers import Identifier
from simulators.routes import CITIES

__all__ = [
    "DEFAULT_SETPOINT_C",
    "Ambient",
    "CompartmentSpec",
    "Defrost",
    "Expectation",
    "Fault",
    "Scenario",
    "ScenarioError",
    "Shipment",
    "Stop",
    "StoreSpec",
    "TruckSpec",
    "ZoneSpec",
    "load_scenario",
    "parse_duration",
    "parse_scenario",
]

DEFAULT_SETPOINT_C: dict[str, float] = {
    "frozen": -20.0,
    "chilled": 2.0,
    "pharma_2_8": 5.0,
    "controlled_room": 20.0,
}


class ScenarioError(ColdchainError):
    """A scenario file is unreadable or inconsistent; the message names field and value."""


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: Any) -> float:
    """``"1h30m"`` -> 5400.0; numbers are seconds. Raises ValueError on anything else."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '25m' or '1h30m'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION_RE.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _UNIT_S[u] for n, u in parts)
    raise ValueError("a duration is a number of seconds or a string like '25m' or '1h30m'")


def parse_window(value: Any) -> tuple[float, float]:
    """``[13h30m, 13h45m]`` -> (48600.0, 49500.0); one duration ``t`` is ``[t, t]``."""
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError("a window is one duration or a list of two: [from, to]")
        lo, hi = parse_duration(value[0]), parse_duration(value[1])
    else:
        lo = hi = parse_duration(value)
    if lo < 0 or hi < lo:
        raise ValueError("a window [from, to] needs 0 <= from <= to")
    return lo, hi


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0.0)]
Window = Annotated[tuple[float, float], BeforeValidator(parse_window)]
PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0.0)]
TempC = Annotated[float, Field(ge=-70.0, le=40.0)]

_CFG = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Ambient(BaseModel):
    """Outdoor air: a daily cosine in local time (south China in summer by default)."""

    model_config = _CFG

    mean_c: float = Field(default=28.0, ge=-40.0, le=50.0)
    amplitude_c: float = Field(default=4.0, ge=0.0, le=20.0)
    peak_hour_local: float = Field(default=15.0, ge=0.0, lt=24.0)


class ThermalOverrides(BaseModel):
    """Any ThermalParams field, to size a compartment away from the defaults."""

    model_config = _CFG

    air_capacity_j_per_k: float | None = Field(default=None, gt=0)
    load_capacity_j_per_k: float | None = Field(default=None, gt=0)
    wall_ua_w_per_k: float | None = Field(default=None, ge=0)
    door_ua_w_per_k: float | None = Field(default=None, ge=0)
    load_ua_w_per_k: float | None = Field(default=None, gt=0)
    cooling_w_at_0c: float | None = Field(default=None, ge=0)
    heating_w: float | None = Field(default=None, ge=0)
    defrost_heat_w: float | None = Field(default=None, ge=0)
    hysteresis_k: float | None = Field(default=None, gt=0, le=10)
    supply_delta_k: float | None = Field(default=None, ge=0)
    stops_on_door_open: bool | None = None


class Defrost(BaseModel):
    model_config = _CFG

    interval_s: PositiveSeconds = Field(alias="interval")
    duration_s: PositiveSeconds = Field(alias="duration")
    first_s: Seconds = Field(default=3600.0, alias="first")


class CompartmentSpec(BaseModel):
    model_config = _CFG

    id: Identifier
    profile: str = Field(min_length=1, max_length=64)
    setpoint_c: TempC | None = None
    probes: tuple[Literal["air", "product"], ...] = Field(default=("air", "product"), min_length=1)
    thermal: ThermalOverrides = ThermalOverrides()
    defrost: Defrost | None = None

    @property
    def effective_setpoint_c(self) -> float:
        if self.setpoint_c is not None:
            return self.setpoint_c
        return DEFAULT_SETPOINT_C.get(self.profile, 4.0)

    def sensor_id(self, probe: str) -> str:
        return f"{self.id}-{'air' if probe == 'air' else 'prod'}"


class ZoneSpec(CompartmentSpec):
    kind: Literal["frozen", "chilled", "ante_room"] = "chilled"
    door_traffic_per_h: float = Field(default=4.0, ge=0.0, le=120.0)


class Expectation(BaseModel):
    """Evidence a fault or planned event must raise: one excursion of ``kind`` on ``asset``
    (``compartment``: that one; unset: any) starting inside ``start`` and, if given, ending
    inside ``end`` (windows are offsets from the run's start, widened by one sample interval
    of the asset when scored; an excursion still open ends at the run's end). Up to
    ``max_count`` excursions are explained by it; more are false alarms (a storm).
    simulators/scoring.py scores a run against these (docs/simulators.md, "Expectations")."""

    model_config = _CFG

    kind: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
    # Default: the fault's asset; for a transfer, its store (or the truck without one).
    asset: Identifier | None = None
    # Default: the fault's compartment (or its sensor's); for a transfer's custody_gap,
    # "dock:<shipment>" (coldchain.trace); else any compartment of the asset.
    compartment: str | None = Field(default=None, min_length=1, max_length=200)
    start_s: Window = Field(alias="start")
    end_s: Window | None = Field(default=None, alias="end")
    max_count: int = Field(default=1, ge=1, le=1000)


class Transfer(BaseModel):
    """One shipment loaded or unloaded at a stop, with the store it comes from or goes to."""

    model_config = _CFG

    shipment: Identifier
    compartment: Identifier
    store: Identifier | None = None
    zone: Identifier | None = None
    # Time the shipment sits on the store's dock, unmonitored, between truck and zone.
    dock_dwell_s: Seconds = Field(default=600.0, alias="dock_dwell")
    # Evidence this transfer must raise (e.g. a custody gap for a long dock dwell).
    expect: tuple[Expectation, ...] = ()


class Stop(BaseModel):
    model_config = _CFG

    city: str
    dwell_s: Seconds = Field(default=1800.0, alias="dwell")
    load: tuple[Transfer, ...] = ()
    unload: tuple[Transfer, ...] = ()


class TruckRoute(BaseModel):
    model_config = _CFG

    depart_s: Seconds = Field(default=3600.0, alias="depart")
    cruise_speed_kmh: float = Field(default=80.0, gt=10.0, le=120.0)
    stops: tuple[Stop, ...] = Field(min_length=2)


class TruckSpec(BaseModel):
    model_config = _CFG

    id: Identifier
    name: str = ""
    device: Identifier | None = None
    driver: str = Field(default="driver", min_length=1, max_length=64)
    compartments: tuple[CompartmentSpec, ...] = Field(min_length=1, max_length=3)
    route: TruckRoute
    sample_interval_s: PositiveSeconds | None = Field(default=None, alias="sample_interval")

    @property
    def device_id(self) -> str:
        return self.device or f"{self.id}-tcu"


class StoreSpec(BaseModel):
    model_config = _CFG

    id: Identifier
    name: str = ""
    city: str
    device: Identifier | None = None
    staff: str = Field(default="dock-staff", min_length=1, max_length=64)
    zones: tuple[ZoneSpec, ...] = Field(min_length=1, max_length=8)
    # Dock readers registered to post events for this store (the fleet's ``scanners``).
    scanners: tuple[Identifier, ...] = ()
    working_hours_local: tuple[float, float] = (6.0, 22.0)
    sample_interval_s: PositiveSeconds | None = Field(default=None, alias="sample_interval")

    @property
    def device_id(self) -> str:
        return self.device or f"{self.id}-gw"


class Shipment(BaseModel):
    model_config = _CFG

    id: Identifier
    profile: str = Field(min_length=1, max_length=64)
    description: str = ""
    # "store-id/zone-id" if the shipment starts the day in a store zone.
    initial: str | None = None


FaultKind = Literal[
    "door_open",
    "compressor_failure",
    "power_cut",
    "wrong_setpoint",
    "coverage_loss",
    "sensor_stuck",
    "sensor_dead",
    "clock_skew",
    "duplicate_publish",
]
_NEEDS_COMPARTMENT = {"door_open", "wrong_setpoint"}
_NEEDS_SENSOR = {"sensor_stuck", "sensor_dead"}


class Fault(BaseModel):
    """One fault: what, where, when, and the kind's parameters (unused ones must stay unset)."""

    model_config = _CFG

    kind: FaultKind
    asset: Identifier
    compartment: Identifier | None = None
    sensor: Identifier | None = None
    start_s: Seconds = Field(alias="start")
    duration_s: PositiveSeconds = Field(alias="duration")
    # compressor_failure: remaining capacity (0 = dead) and the alarm the unit raises, if any.
    capacity_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    alarm_code: int | None = Field(default=None, ge=0, le=65535)
    # wrong_setpoint
    setpoint_c: TempC | None = None
    # sensor_stuck: the value it sticks at (default: its last good reading)
    value_c: float | None = Field(default=None, ge=-100.0, le=100.0)
    # clock_skew: device clock minus true time
    offset_s: float | None = Field(default=None, ge=-30 * 86400.0, le=30 * 86400.0)
    # coverage_loss
    batch_max: int = Field(default=MAX_BATCH_SAMPLES, ge=1, le=MAX_BATCH_SAMPLES)
    upload_delay_s: Seconds = Field(default=20.0, alias="upload_delay")
    # duplicate_publish: chance that a message is sent twice
    probability: float = Field(default=1.0, gt=0.0, le=1.0)
    # Evidence the fault must raise; none declared: everything it raises is a false alarm.
    expect: tuple[Expectation, ...] = ()

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s

    @model_validator(mode="after")
    def _params_for_kind(self) -> Fault:
        if self.kind in _NEEDS_COMPARTMENT and self.compartment is None:
            raise ValueError(f"a {self.kind} fault needs 'compartment'")
        if self.kind in _NEEDS_SENSOR and self.sensor is None:
            raise ValueError(f"a {self.kind} fault needs 'sensor'")
        if self.kind == "wrong_setpoint" and self.setpoint_c is None:
            raise ValueError("a wrong_setpoint fault needs 'setpoint_c'")
        if self.kind == "clock_skew" and self.offset_s is None:
            raise ValueError("a clock_skew fault needs 'offset_s'")
        return self


class Scenario(BaseModel):
    model_config = _CFG

    name: Identifier
    description: str = ""
    seed: int = 1
    duration_s: PositiveSeconds = Field(alias="duration")
    sample_interval_s: PositiveSeconds = Field(default=60.0, alias="sample_interval")
    utc_offset_h: float = Field(default=8.0, ge=-12.0, le=14.0)
    ambient: Ambient = Ambient()
    trucks: tuple[TruckSpec, ...] = ()
    stores: tuple[StoreSpec, ...] = ()
    shipments: tuple[Shipment, ...] = ()
    faults: tuple[Fault, ...] = ()
    # Door open/close events on the events topic (stores see hundreds a day).
    door_events: bool = True
    # A retained "online" status per device when it first publishes.
    status_messages: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if not self.trucks and not self.stores:
            raise ValueError("a scenario needs at least one truck or store")
        comps: dict[str, set[str]] = {}
        sensors: dict[str, set[str]] = {}
        for t in self.trucks:
            comps[t.id] = {c.id for c in t.compartments}
            sensors[t.id] = {c.sensor_id(p) for c in t.compartments for p in c.probes}
            for i, stop in enumerate(t.route.stops):
                if stop.city not in CITIES:
                    raise ValueError(
                        f"trucks.{t.id}.route.stops.{i}.city: unknown city {stop.city!r} "
                        f"(known: {', '.join(sorted(CITIES))})"
                    )
        for s in self.stores:
            if s.id in comps:
                raise ValueError(f"stores.{s.id}: id already used by a truck")
            if s.city not in CITIES:
                raise ValueError(f"stores.{s.id}.city: unknown city {s.city!r}")
            comps[s.id] = {z.id for z in s.zones}
            sensors[s.id] = {z.sensor_id(p) for z in s.zones for p in z.probes}
        ship_ids = {sh.id for sh in self.shipments}
        for t in self.trucks:
            for i, stop in enumerate(t.route.stops):
                for what in ("load", "unload"):
                    for tr in getattr(stop, what):
                        where = f"trucks.{t.id}.route.stops.{i}.{what}"
                        if tr.shipment not in ship_ids:
                            raise ValueError(f"{where}: unknown shipment {tr.shipment!r}")
                        if tr.compartment not in comps[t.id]:
                            raise ValueError(f"{where}: unknown compartment {tr.compartment!r}")
                        if tr.store is not None and (
                            tr.store not in comps or tr.zone not in comps[tr.store]
                        ):
                            raise ValueError(
                                f"{where}: unknown store zone {tr.store!r}/{tr.zone!r}"
                            )
        for i, f in enumerate(self.faults):
            where = f"faults.{i}"
            if f.asset not in comps:
                raise ValueError(f"{where}.asset: unknown asset {f.asset!r}")
            if f.compartment is not None and f.compartment not in comps[f.asset]:
                raise ValueError(f"{where}.compartment: unknown compartment {f.compartment!r}")
            if f.sensor is not None and f.sensor not in sensors[f.asset]:
                raise ValueError(
                    f"{where}.sensor: unknown sensor {f.sensor!r} "
                    f"(known: {', '.join(sorted(sensors[f.asset]))})"
                )
            if f.start_s >= self.duration_s:
                raise ValueError(f"{where}.start: {f.start_s:.0f} s is after the scenario ends")
            for j, x in enumerate(f.expect):
                self._check_expectation(f"{where}.expect.{j}", x, f.asset, comps)
        for t in self.trucks:
            for i, stop in enumerate(t.route.stops):
                for what in ("load", "unload"):
                    for k, tr in enumerate(getattr(stop, what)):
                        for j, x in enumerate(tr.expect):
                            where = f"trucks.{t.id}.route.stops.{i}.{what}.{k}.expect.{j}"
                            self._check_expectation(where, x, tr.store or t.id, comps)
        return self

    def _check_expectation(
        self, where: str, x: Expectation, asset: str, comps: dict[str, set[str]]
    ) -> None:
        asset = x.asset or asset
        if asset not in comps:
            raise ValueError(f"{where}.asset: unknown asset {asset!r}")
        docks = {f"dock:{sh.id}" for sh in self.shipments}
        if x.compartment is not None and x.compartment not in comps[asset] | docks:
            raise ValueError(
                f"{where}.compartment: {x.compartment!r} is not a compartment of {asset} "
                "nor a shipment's dock ('dock:<shipment>')"
            )
        if x.start_s[0] > self.duration_s:
            raise ValueError(f"{where}.start: {x.start_s[0]:.0f} s is after the scenario ends")

    def fleet(self) -> Fleet:
        """The device registry this scenario publishes against (write it with to_yaml())."""
        assets: list[Asset] = []
        units: tuple[CompartmentSpec, ...]
        specs: list[TruckSpec | StoreSpec] = [*self.trucks, *self.stores]
        for spec in specs:
            if isinstance(spec, TruckSpec):
                kind: Literal["vehicle", "store"] = "vehicle"
                units = spec.compartments
            else:
                kind = "store"
                units = spec.zones
            assets.append(
                Asset(
                    id=spec.id,
                    kind=kind,
                    name=spec.name,
                    devices=(spec.device_id,),
                    compartments=tuple(
                        Compartment(
                            id=c.id,
                            profile=c.profile,
                            sensors=tuple(SensorSpec(id=c.sensor_id(p), probe=p) for p in c.probes),
                        )
                        for c in units
                    ),
                    scanners=spec.scanners if isinstance(spec, StoreSpec) else (),
                    location=_store_location(spec) if isinstance(spec, StoreSpec) else None,
                )
            )
        return Fleet(assets)

    def faults_for(self, asset_id: str) -> tuple[Fault, ...]:
        return tuple(f for f in self.faults if f.asset == asset_id)

    def sample_interval_of(self, asset_id: str) -> float:
        """Seconds between an asset's samples (its own setting, else the scenario's)."""
        specs: list[TruckSpec | StoreSpec] = [*self.trucks, *self.stores]
        for spec in specs:
            if spec.id == asset_id and spec.sample_interval_s is not None:
                return spec.sample_interval_s
        return self.sample_interval_s


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not loc:  # cross-field checks name their own field in the message
            lines.append(msg)
            continue
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (value {value!r})"
        lines.append(f"{loc}: {msg}{shown}")
    return "; ".join(lines)


def parse_scenario(raw: Any, source: str = "<scenario>") -> Scenario:
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(f"scenario {source}: {_describe(exc)}") from exc


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario YAML file; errors say which field is wrong and why."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"scenario {path}: {exc}") from exc
    return parse_scenario(raw, str(path))


def _store_location(spec: StoreSpec) -> Location:
    """A store stands in its city (simulators/routes.py CITIES)."""
    place = CITIES[spec.city]
    return Location(lat=place.lat, lon=place.lon)
