"""Reefer-truck and cold-store simulators: deterministic telemetry, faults on demand, ground truth.

The core is pure: ``Simulation(scenario, start=..., seed=...).messages()`` yields every MQTT
message in publish order with its simulated publish time, and ``.truth()`` says what really
happened. ``simulators.publish`` paces that stream on an accelerated clock over paho-mqtt, and
runs the many-device scale mode. See docs/simulators.md.
"""

from pathlib import Path

from simulators.device import SimMessage
from simulators.engine import Simulation, simulate
from simulators.scenario import (
    Fault,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_duration,
    parse_scenario,
)
from simulators.truth import GroundTruth

__all__ = [
    "SCENARIO_DIR",
    "Fault",
    "GroundTruth",
    "Scenario",
    "ScenarioError",
    "SimMessage",
    "Simulation",
    "library_scenario",
    "library_scenarios",
    "load_scenario",
    "parse_duration",
    "parse_scenario",
    "simulate",
]

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


def library_scenarios() -> list[str]:
    """Names of the scenarios shipped in simulators/scenarios/."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def library_scenario(name: str) -> Scenario:
    """Load a shipped scenario by name, e.g. ``library_scenario("door_left_open")``."""
    path = SCENARIO_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ScenarioError(
            f"no library scenario {name!r} (have: {', '.join(library_scenarios())})"
        )
    return load_scenario(path)
