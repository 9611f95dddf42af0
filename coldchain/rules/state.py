"""Checkpoints: the streaming state of every compartment as a JSON-able dict.

Shape (``version`` 1)::

    {"version": 1,
     "compartments": [{"asset": "truck-1", "compartment": "front", "profile": "chilled",
                       "state": {...CompartmentEvaluator.dump()...}}, ...]}

Everything inside is str/int/float/bool/None/list/dict, so ``json.dumps`` round-trips it exactly
(Python writes floats with ``repr``, which reads back to the same float). Restoring resumes open
excursions: the next sample continues them exactly as if the process had never stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from coldchain.exceptions import ConfigError
from coldchain.rules.evaluator import CompartmentEvaluator
from coldchain.rules.profiles import Profile
from coldchain.rules.readings import CompartmentSpec

__all__ = ["CHECKPOINT_VERSION", "dump_checkpoint", "load_checkpoint"]

CHECKPOINT_VERSION = 1


def dump_checkpoint(evaluators: Mapping[tuple[str, str], CompartmentEvaluator]) -> dict[str, Any]:
    return {
        "version": CHECKPOINT_VERSION,
        "compartments": [
            {"asset": a, "compartment": c, "profile": ev.profile.name, "state": ev.dump()}
            for (a, c), ev in sorted(evaluators.items())
        ],
    }


def load_checkpoint(
    data: Mapping[str, Any],
    spec_of: Callable[[str, str], CompartmentSpec | None],
    profile_of: Callable[[str], Profile | None],
) -> dict[tuple[str, str], CompartmentEvaluator]:
    """Evaluators from a checkpoint. Compartments no longer registered, or whose profile no
    longer exists, are dropped (they start fresh)."""
    if data.get("version") != CHECKPOINT_VERSION:
        raise ConfigError("checkpoint.version", data.get("version"), "unsupported version")
    out: dict[tuple[str, str], CompartmentEvaluator] = {}
    for i, entry in enumerate(data.get("compartments", [])):
        try:
            a, c, pname, state = (
                entry["asset"],
                entry["compartment"],
                entry["profile"],
                entry["state"],
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"checkpoint.compartments.{i}", entry, f"missing {exc}") from exc
        spec = spec_of(a, c)
        profile = profile_of(pname)
        if spec is None or profile is None:
            continue
        ev = CompartmentEvaluator(spec, profile)
        try:
            ev.load(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"checkpoint.compartments.{i}.state", f"{a}/{c}", f"unreadable: {exc!r}"
            ) from exc
        out[(a, c)] = ev
    return out
