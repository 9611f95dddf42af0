"""One module per rule kind; ``build_rules`` turns a profile into fresh rule instances."""

from __future__ import annotations

from coldchain.rules.kinds.base import Rule, Track
from coldchain.rules.kinds.cumulative import CumulativeKind
from coldchain.rules.kinds.door import DoorKind, SetpointKind
from coldchain.rules.kinds.gap import GapKind, gap_cap_ms
from coldchain.rules.kinds.mkt import MktKind
from coldchain.rules.kinds.range import RangeKind
from coldchain.rules.kinds.sensor import DisagreeKind, ImplausibleKind, StuckKind
from coldchain.rules.profiles import (
    CumulativeRule,
    DataGapRule,
    DoorRule,
    HardLimitRule,
    MktRule,
    Profile,
    RangeRule,
    SensorFaultRule,
    SetpointRule,
)

__all__ = ["Rule", "Track", "build_rules", "gap_cap_ms", "gap_spec"]


def build_rules(profile: Profile) -> list[Rule]:
    """Fresh rule instances for one compartment, in the profile's order."""
    rules: list[Rule] = []
    for spec in profile.rules:
        if isinstance(spec, RangeRule | HardLimitRule):
            rules.append(RangeKind(spec))
        elif isinstance(spec, CumulativeRule):
            rules.append(CumulativeKind(spec))
        elif isinstance(spec, MktRule):
            rules.append(MktKind(spec))
        elif isinstance(spec, DataGapRule):
            rules.append(GapKind(spec))
        elif isinstance(spec, DoorRule):
            rules.append(DoorKind(spec))
        elif isinstance(spec, SetpointRule):
            rules.append(SetpointKind(spec))
        elif isinstance(spec, SensorFaultRule):
            if spec.check == "stuck":
                rules.append(StuckKind(spec))
            elif spec.check == "implausible":
                rules.append(ImplausibleKind(spec))
            else:
                rules.append(DisagreeKind(spec))
    return rules


def gap_spec(profile: Profile) -> DataGapRule | None:
    for spec in profile.rules:
        if isinstance(spec, DataGapRule):
            return spec
    return None
