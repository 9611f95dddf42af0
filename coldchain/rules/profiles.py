"""Product profiles: which rules a compartment's contents need, loaded from YAML.

A profile file maps profile names to a list of rules (see docs/rules.md, "Profile YAML").
The packaged presets live in ``presets.yaml`` next to this module. ``load_profiles`` is the only
I/O of the rules engine; everything else works on the validated, frozen models defined here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from coldchain.exceptions import ProfileError

__all__ = [
    "PRESETS_RESOURCE",
    "CumulativeRule",
    "DataGapRule",
    "DoorRule",
    "Escalation",
    "HardLimitRule",
    "MktRule",
    "Profile",
    "ProfileAssignment",
    "ProfileSet",
    "RangeRule",
    "RuleSpec",
    "SensorFaultRule",
    "SetpointRule",
    "load_presets",
    "load_profiles",
    "parse_profiles",
    "profile_at",
]

PRESETS_RESOURCE = "presets.yaml"

_CFG = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
RuleName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Minutes = Annotated[float, Field(ge=0.0, le=525_600.0)]
TempC = Annotated[float, Field(ge=-150.0, le=150.0)]


class Escalation(BaseModel):
    """When a warning becomes critical: whichever threshold is reached first."""

    model_config = _CFG

    after_min: Minutes | None = None
    degree_minutes: Annotated[float, Field(gt=0.0)] | None = None
    peak_beyond_c: Annotated[float, Field(ge=0.0)] | None = None


class _RuleBase(BaseModel):
    model_config = _CFG

    name: RuleName
    severity: Literal["info", "warning", "critical"] = "warning"
    description: str = Field(default="", max_length=500)


class RangeRule(_RuleBase):
    """Outside [min_c, max_c] continuously for >= delay opens; inside for >= clear delay closes."""

    kind: Literal["range"]
    min_c: TempC | None = None
    max_c: TempC | None = None
    inclusive: bool = False  # True: a value equal to the limit is already outside (WHO ">= 45")
    delay_min: Minutes = 0.0
    clear_delay_min: Minutes = 0.0
    hysteresis_c: Annotated[float, Field(ge=0.0, le=20.0)] = 0.0
    escalate: Escalation | None = None
    defrost_suppress_min: Minutes = 0.0
    door_extra_delay_min: Minutes = 0.0

    @model_validator(mode="after")
    def _limits(self) -> RangeRule:
        _check_limits(self.min_c, self.max_c)
        _check_hysteresis(self.min_c, self.max_c, self.hysteresis_c)
        return self


class HardLimitRule(_RuleBase):
    """Any reading beyond a hard limit: critical at once; closes once back inside (within the
    hysteresis band) for the clear delay - 10 min by default, so a value dithering at the limit
    is one episode, not an alarm storm (docs/rules.md, section 4.2)."""

    kind: Literal["hard_limit"]
    severity: Literal["info", "warning", "critical"] = "critical"
    min_c: TempC | None = None
    max_c: TempC | None = None
    inclusive: bool = False
    clear_delay_min: Minutes = 10.0
    hysteresis_c: Annotated[float, Field(ge=0.0, le=20.0)] = 0.0

    @model_validator(mode="after")
    def _limits(self) -> HardLimitRule:
        _check_limits(self.min_c, self.max_c)
        _check_hysteresis(self.min_c, self.max_c, self.hysteresis_c)
        return self


class CumulativeRule(_RuleBase):
    """Total time above (or below) a threshold against a budget, per window or custody period."""

    kind: Literal["cumulative"]
    above_c: TempC | None = None
    below_c: TempC | None = None
    inclusive: bool = True
    budget_min: Annotated[float, Field(gt=0.0, le=525_600.0)]
    window_h: Annotated[float, Field(gt=0.0, le=8784.0)] | None = None  # None: custody period

    @model_validator(mode="after")
    def _one_side(self) -> CumulativeRule:
        if (self.above_c is None) == (self.below_c is None):
            raise ValueError("exactly one of above_c and below_c must be set")
        return self


class MktRule(_RuleBase):
    """Mean kinetic temperature (USP <1079.2>) over a trailing window against a limit."""

    kind: Literal["mkt"]
    max_c: TempC
    window_h: Annotated[float, Field(ge=1.0, le=8784.0)] = 24.0
    dh_r_k: Annotated[float, Field(gt=0.0, le=100_000.0)] = 10_000.0
    min_coverage: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    buckets: Annotated[int, Field(ge=4, le=1000)] = 96


class DataGapRule(_RuleBase):
    """No temperature recording for longer than the allowed interval."""

    kind: Literal["data_gap"]
    transport_min: Annotated[float, Field(gt=0.0, le=1440.0)] = 10.0
    storage_min: Annotated[float, Field(gt=0.0, le=1440.0)] = 30.0
    escalate_after_min: Minutes | None = None


class DoorRule(_RuleBase):
    """Door open continuously for longer than allowed (longer at a loading stop)."""

    kind: Literal["door_open"]
    max_open_min: Annotated[float, Field(gt=0.0, le=1440.0)]
    loading_max_open_min: Annotated[float, Field(gt=0.0, le=1440.0)] | None = None


class SetpointRule(_RuleBase):
    """The reefer setpoint must lie in [min_c, max_c]; mismatch for >= delay opens."""

    kind: Literal["setpoint"]
    min_c: TempC | None = None
    max_c: TempC | None = None
    delay_min: Minutes = 0.0

    @model_validator(mode="after")
    def _limits(self) -> SetpointRule:
        _check_limits(self.min_c, self.max_c)
        return self


class SensorFaultRule(_RuleBase):
    """Sensor fault: stuck value, implausible value, or probes of one kind disagreeing."""

    kind: Literal["sensor_fault"]
    check: Literal["stuck", "implausible", "disagree"]
    # implausible
    min_c: TempC = -60.0
    max_c: TempC = 70.0
    # stuck: identical value for >= stuck_samples samples AND >= stuck_min minutes; a product
    # probe also needs the air (else door/defrost time) to say the product must have moved:
    # more than product_move_c away from the frozen value for product_move_min since it froze
    stuck_samples: Annotated[int, Field(ge=2, le=100_000)] = 30
    stuck_min: Minutes = 60.0
    product_move_c: Annotated[float, Field(gt=0.0, le=100.0)] = 3.0
    product_move_min: Minutes = 30.0
    # disagree: spread between probes of the same kind (air/product) for >= delay
    max_spread_c: Annotated[float, Field(gt=0.0, le=100.0)] = 3.0
    delay_min: Minutes = 10.0

    @model_validator(mode="after")
    def _limits(self) -> SensorFaultRule:
        if self.min_c >= self.max_c:
            raise ValueError("min_c must be below max_c")
        return self


RuleSpec = Annotated[
    RangeRule
    | HardLimitRule
    | CumulativeRule
    | MktRule
    | DataGapRule
    | DoorRule
    | SetpointRule
    | SensorFaultRule,
    Field(discriminator="kind"),
]


def _check_hysteresis(lo: float | None, hi: float | None, hysteresis_c: float) -> None:
    if lo is not None and hi is not None and hi - lo < 2 * hysteresis_c:
        raise ValueError("hysteresis_c leaves no room between min_c and max_c")


def _check_limits(lo: float | None, hi: float | None) -> None:
    if lo is None and hi is None:
        raise ValueError("at least one of min_c and max_c must be set")
    if lo is not None and hi is not None and lo >= hi:
        raise ValueError(f"min_c ({lo}) must be below max_c ({hi})")


class Profile(BaseModel):
    """A named product profile: its rules, evaluated per compartment."""

    model_config = _CFG

    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=500)
    rules: tuple[RuleSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Profile:
        names = [r.name for r in self.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate rule names {dup}")
        if sum(1 for r in self.rules if r.kind == "data_gap") > 1:
            raise ValueError("at most one data_gap rule per profile")
        return self


class _ProfileBody(BaseModel):
    model_config = _CFG

    description: str = Field(default="", max_length=500)
    rules: tuple[RuleSpec, ...] = Field(min_length=1)


class _ProfileFile(BaseModel):
    model_config = _CFG

    version: Literal[1] = 1
    profiles: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")], _ProfileBody]


class ProfileSet:
    """Profiles by name."""

    def __init__(self, profiles: Iterable[Profile]) -> None:
        self._by_name: dict[str, Profile] = {}
        for p in profiles:
            if p.name in self._by_name:
                raise ProfileError(f"profiles.{p.name}", p.name, "duplicate profile name")
            self._by_name[p.name] = p

    def __getitem__(self, name: str) -> Profile:
        try:
            return self._by_name[name]
        except KeyError:
            raise ProfileError(
                "profile", name, f"unknown profile; known: {sorted(self._by_name)}"
            ) from None

    def get(self, name: str) -> Profile | None:
        return self._by_name.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def merged(self, other: ProfileSet) -> ProfileSet:
        """This set with ``other``'s profiles added; ``other`` wins on equal names."""
        combined = dict(self._by_name)
        combined.update(other._by_name)
        return ProfileSet(combined.values())


def parse_profiles(raw: Any, source: str = "<profiles>") -> ProfileSet:
    """Validate an already-parsed YAML/JSON document. Errors name the field and the bad value."""
    try:
        parsed = _ProfileFile.model_validate(raw)
        profiles = []
        for name, body in parsed.profiles.items():
            try:
                profiles.append(Profile(name=name, description=body.description, rules=body.rules))
            except ValidationError as exc:
                raise _to_error(exc, source, prefix=("profiles", name)) from exc
    except ValidationError as exc:
        raise _to_error(exc, source, prefix=()) from exc
    return ProfileSet(profiles)


def load_profiles(path: str | Path) -> ProfileSet:
    """Read and validate a profiles YAML file (the only file I/O of the rules engine)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError("file", str(path), str(exc)) from exc
    return parse_profiles(raw, source=str(path))


def load_presets(merge_path: str | Path | None = None) -> ProfileSet:
    """The packaged preset profiles (``coldchain/rules/presets.yaml``), with the profiles of
    ``merge_path`` (``COLDCHAIN_PROFILES_PATH``) merged over them when given."""
    text = resources.files("coldchain.rules").joinpath(PRESETS_RESOURCE).read_text("utf-8")
    presets = parse_profiles(yaml.safe_load(text), source=PRESETS_RESOURCE)
    return presets if merge_path is None else presets.merged(load_profiles(merge_path))


def _to_error(exc: ValidationError, source: str, prefix: tuple[str, ...]) -> ProfileError:
    first = exc.errors()[0]
    loc = [str(p) for p in (*prefix, *first["loc"])]
    # Drop pydantic's discriminator tag from the path: rules.0.range.max_c -> rules.0.max_c
    cleaned = [
        p for i, p in enumerate(loc) if not (i > 0 and loc[i - 1].isdigit() and p in _KIND_TAGS)
    ]
    field = ".".join(cleaned) or "<root>"
    value = first.get("input")
    if isinstance(value, Mapping):
        value = dict(value)
    return ProfileError(field, value, f"{first['msg']} (in {source})")


_KIND_TAGS = frozenset(
    {
        "range",
        "hard_limit",
        "cumulative",
        "mkt",
        "data_gap",
        "door_open",
        "setpoint",
        "sensor_fault",
    }
)


class ProfileAssignment(BaseModel):
    """One entry of a compartment's profile history: from ``from_ms`` on it holds ``profile``.

    The registry persists these (append-only); the engine uses the newest whose ``from_ms`` is at
    or before a sample's device time.
    """

    model_config = _CFG

    asset: str = Field(min_length=1, max_length=64)
    compartment: str = Field(min_length=1, max_length=64)
    profile: str = Field(min_length=1, max_length=64)
    from_ms: int = Field(ge=0)
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=500)


def profile_at(
    assignments: Iterable[ProfileAssignment],
    asset: str,
    compartment: str,
    ts_ms: int,
    default: str | None = None,
) -> str | None:
    """The profile assigned to (asset, compartment) at device time ``ts_ms``, else ``default``."""
    best: ProfileAssignment | None = None
    for a in assignments:
        if a.asset != asset or a.compartment != compartment or a.from_ms > ts_ms:
            continue
        if best is None or a.from_ms >= best.from_ms:
            best = a
    return best.profile if best is not None else default
