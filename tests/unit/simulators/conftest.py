"""Library scenarios are simulated once per session: several test modules read the same runs."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import pytest

from simulators import GroundTruth, SimMessage, Simulation, library_scenario

START = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)  # 00:00 in Guangzhou


@functools.cache
def run_library(name: str) -> tuple[list[SimMessage], GroundTruth]:
    return Simulation(library_scenario(name), start=START).run()


@pytest.fixture(scope="session")
def library_run() -> functools._lru_cache_wrapper[tuple[list[SimMessage], GroundTruth]]:
    return run_library
