"""One module per rule kind; ``build_rules`` turns a profile into fresh rule instances."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coldchain.rules.kinds.base import Rule, Track
from coldchain.rules.kinds.cumulative import CumulativeKind
from coldchain.rules.kinds.door import DoorKind, SetpointKind
from coldchain.rules.kinds.gap import GapKind, ProbeSilenceKind, gap_cap_ms
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

if TYPE_CHECKING:
    from coldchain.rules.readings import CompartmentSpec

__all__ = ["Rule", "Track", "build_rules", "gap_cap_ms", "gap_spec"]


def build_rules(profile: Profile, comp: CompartmentSpec | None = None) -> list[Rule]:
    """Fresh rule instances for one compartment, in the profile's order. With the compartment's
    ``comp`` spec, a data-gap rule also watches each probe of a compartment with several probes
    (``silent.<sensor>``, docs/rules.md 4.6)."""
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
            if comp is not None and len(comp.sensor_ids) > 1:
                rules.extend(ProbeSilenceKind(spec, s, i) for i, s in enumerate(comp.sensor_ids))
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
