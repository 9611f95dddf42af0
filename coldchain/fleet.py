"""Device registry: device -> asset (vehicle or store) -> compartments/zones -> sensors.

Loaded from a YAML fleet file (see ``fleet/demo.yaml`` and docs/telemetry.md). Lookups on the
ingest hot path are plain dict reads built once at load time.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coldchain.exceptions import RegistryError
from coldchain.identifiers import Identifier, is_gs1_key

__all__ = ["Asset", "Compartment", "Fleet", "Location", "SensorSpec", "load_fleet", "parse_fleet"]

_CFG = ConfigDict(extra="forbid", frozen=True)


class SensorSpec(BaseModel):
    model_config = _CFG

    id: Identifier
    probe: Literal["air", "product"] = "air"


class Compartment(BaseModel):
    """A truck compartment or a store zone; ``profile`` names the product profile it holds."""

    model_config = _CFG

    id: Identifier
    profile: str = Field(min_length=1, max_length=64)
    sensors: tuple[SensorSpec, ...] = Field(min_length=1)


class Location(BaseModel):
    """A fixed place (WGS 84 degrees): where a store stands, for the fleet map."""

    model_config = _CFG

    lat: float = Field(ge=-90.0, le=90.0)
    lon: float = Field(ge=-180.0, le=180.0)


class Asset(BaseModel):
    """A truck or a store. ``devices`` report for it (telemetry and events); ``scanners`` are
    other devices (handheld or dock readers at the site) that may post events naming it, such
    as custody scans. Any other device naming it is rejected (``foreign_asset``)."""

    model_config = _CFG

    id: Identifier
    kind: Literal["vehicle", "store"]
    name: str = Field(default="", max_length=200)
    devices: tuple[Identifier, ...] = Field(min_length=1)
    compartments: tuple[Compartment, ...] = Field(min_length=1)
    # GS1 Global Location Number of the site or vehicle, if it has one: the EPCIS export then
    # names it (and its compartments, as GLN extensions) by GLN instead of a coldchain URI.
    gln: str | None = None
    # Optional fixed location (stores): the dashboards' fleet map draws it as a marker.
    location: Location | None = None

    @field_validator("gln", mode="before")
    @classmethod
    def _gln(cls, value: object) -> object:
        if isinstance(value, int):  # YAML read it as a number: leading zeros are lost
            raise ValueError("write the GLN as a quoted string, e.g. gln: '4012345000115'")
        if isinstance(value, str) and not is_gs1_key(value, 13):
            raise ValueError("a GLN is 13 digits ending in its GS1 check digit")
        return value

    scanners: tuple[Identifier, ...] = ()

    @model_validator(mode="after")
    def _unique_ids(self) -> Asset:
        comp_dups = _duplicates(c.id for c in self.compartments)
        if comp_dups:
            raise ValueError(f"asset {self.id}: duplicate compartment id(s) {comp_dups}")
        sensor_dups = _duplicates(s.id for c in self.compartments for s in c.sensors)
        if sensor_dups:
            raise ValueError(
                f"asset {self.id}: duplicate sensor id(s) {sensor_dups}"
                " (sensor ids must be unique within the asset)"
            )
        device_dups = _duplicates(self.devices)
        if device_dups:
            raise ValueError(f"asset {self.id}: duplicate device id(s) {device_dups}")
        scanner_dups = _duplicates((*self.devices, *self.scanners))
        if scanner_dups:
            raise ValueError(
                f"asset {self.id}: scanner id(s) {scanner_dups} listed twice or also as devices"
            )
        return self


def _duplicates(ids: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    dups: list[str] = []
    for i in ids:
        if i in seen and i not in dups:
            dups.append(i)
        seen.add(i)
    return dups


class _FleetFile(BaseModel):
    model_config = _CFG

    assets: tuple[Asset, ...]


class Fleet:
    """The registered fleet, indexed for O(1) lookups by device and sensor."""

    def __init__(self, assets: tuple[Asset, ...] | list[Asset]) -> None:
        self.assets: dict[str, Asset] = {}
        self._device_asset: dict[str, Asset] = {}
        # scanner device -> the assets it may name in events (besides its own, if it has one)
        self._scans_for: dict[str, set[str]] = {}
        # (asset_id, sensor_id) -> (compartment_id, probe)
        self._sensor: dict[tuple[str, str], tuple[str, str]] = {}
        for asset in assets:
            if asset.id in self.assets:
                raise RegistryError(f"duplicate asset id {asset.id!r}")
            self.assets[asset.id] = asset
            for device_id in asset.devices:
                if device_id in self._device_asset:
                    raise RegistryError(
                        f"device {device_id!r} is registered to both "
                        f"{self._device_asset[device_id].id!r} and {asset.id!r}"
                    )
                self._device_asset[device_id] = asset
            for scanner in asset.scanners:
                self._scans_for.setdefault(scanner, set()).add(asset.id)
            for comp in asset.compartments:
                for sensor in comp.sensors:
                    self._sensor[(asset.id, sensor.id)] = (comp.id, sensor.probe)

    def asset_of(self, device_id: str) -> Asset | None:
        return self._device_asset.get(device_id)

    def is_known_device(self, device_id: str) -> bool:
        """A device of an asset, or a scanner registered for one."""
        return device_id in self._device_asset or device_id in self._scans_for

    def may_name(self, device_id: str, asset_id: str) -> bool:
        """May ``device_id`` post events naming ``asset_id``: its own asset, or one that lists
        it among its ``scanners``."""
        own = self._device_asset.get(device_id)
        if own is not None and own.id == asset_id:
            return True
        return asset_id in self._scans_for.get(device_id, ())

    def sensor(self, asset_id: str, sensor_id: str) -> tuple[str, str] | None:
        """(compartment_id, probe) of a sensor on an asset, or None if not registered."""
        return self._sensor.get((asset_id, sensor_id))

    def has_compartment(self, asset_id: str, compartment_id: str) -> bool:
        asset = self.assets.get(asset_id)
        return asset is not None and any(c.id == compartment_id for c in asset.compartments)

    @property
    def device_ids(self) -> list[str]:
        return sorted(self._device_asset)

    def to_yaml(self) -> str:
        # ``scanners`` only where there are some: most assets have none.
        data = {
            "assets": [
                a.model_dump(
                    mode="json", exclude_none=True, exclude=set() if a.scanners else {"scanners"}
                )
                for a in self.assets.values()
            ]
        }
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def load_fleet(path: str | Path) -> Fleet:
    """Load and check a fleet file; errors name the file and the offending entry."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"fleet file {path}: {exc}") from exc
    return parse_fleet(text, path)


def parse_fleet(text: str, source: str | Path = "<fleet>") -> Fleet:
    """Check the YAML text of a fleet file (``source`` names it in errors). Raises
    RegistryError naming the source and the offending entry (YAML syntax, a field, a device
    registered twice)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"fleet file {source}: {exc}") from exc
    try:
        parsed = _FleetFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise RegistryError(
            f"fleet file {source}: {loc}: {first['msg']} (value {first.get('input')!r})"
        ) from exc
    try:
        return Fleet(parsed.assets)
    except RegistryError as exc:
        raise RegistryError(f"fleet file {source}: {exc}") from exc
