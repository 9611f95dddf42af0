"""The rules engine: pure evaluation of broken-chain rules over telemetry (no I/O).

See docs/rules.md for the exact semantics. Entry points:

* ``RulesEngine`` - the fleet-level streaming engine ingest uses (feed, tick, checkpoint,
  recompute after late data);
* ``evaluate`` - batch evaluation of one compartment's series (same code as streaming);
* ``merge`` - pure late-data merge of reported vs recomputed excursions;
* ``ClockWatch`` - device clocks: clock skew evidence and forward jumps (inside the engine);
* ``RewriteWatch`` - conflicting rewrites of a device's samples (integrity evidence);
* ``load_presets`` / ``load_profiles`` - product profiles from YAML.
"""

from coldchain.rules.clock import ClockReport, ClockWatch
from coldchain.rules.engine import FeedResult, RulesEngine
from coldchain.rules.evaluator import (
    BatchResult,
    Change,
    ChangeKind,
    CompartmentEvaluator,
    RecomputeNeeded,
    evaluate,
    fold,
)
from coldchain.rules.excursion import Excursion, ExcursionStatus, RuleKind, Severity, excursion_id
from coldchain.rules.integrity import Rewrite, RewriteWatch
from coldchain.rules.late import merge
from coldchain.rules.mkt import MktAccumulator, mean_kinetic_temperature
from coldchain.rules.partition import (
    RULES_CLIENT_ID_PREFIX,
    parse_partitions,
    partition_of,
    rules_client_id,
    rules_topic,
)
from coldchain.rules.plausible import plausible_limits
from coldchain.rules.profiles import (
    Profile,
    ProfileAssignment,
    ProfileSet,
    load_presets,
    load_profiles,
    parse_profiles,
    profile_at,
)
from coldchain.rules.readings import (
    CompartmentSpec,
    Observation,
    make_observation,
    observations_from_sample,
    prepare,
    specs_for,
)
from coldchain.rules.state import CHECKPOINT_VERSION, dump_checkpoint, load_checkpoint

__all__ = [
    "CHECKPOINT_VERSION",
    "RULES_CLIENT_ID_PREFIX",
    "BatchResult",
    "Change",
    "ChangeKind",
    "ClockReport",
    "ClockWatch",
    "CompartmentEvaluator",
    "CompartmentSpec",
    "Excursion",
    "ExcursionStatus",
    "FeedResult",
    "MktAccumulator",
    "Observation",
    "Profile",
    "ProfileAssignment",
    "ProfileSet",
    "RecomputeNeeded",
    "Rewrite",
    "RewriteWatch",
    "RuleKind",
    "RulesEngine",
    "Severity",
    "dump_checkpoint",
    "evaluate",
    "excursion_id",
    "fold",
    "load_checkpoint",
    "load_presets",
    "load_profiles",
    "make_observation",
    "mean_kinetic_temperature",
    "merge",
    "observations_from_sample",
    "parse_partitions",
    "parse_profiles",
    "partition_of",
    "plausible_limits",
    "prepare",
    "profile_at",
    "rules_client_id",
    "rules_topic",
    "specs_for",
]
