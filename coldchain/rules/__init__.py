"""The rules engine: pure evaluation of broken-chain rules over telemetry (no I/O)."""

from coldchain.rules.excursion import Excursion, ExcursionStatus, RuleKind, Severity, excursion_id

__all__ = ["Excursion", "ExcursionStatus", "RuleKind", "Severity", "excursion_id"]
