"""The public surface: pinned ``__all__`` lists, and a domain library free of I/O clients."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

PINNED: dict[str, list[str]] = {
    "api": ["ShipmentNotFound", "TraceService", "create_app", "trace_to_dict"],
    "coldchain": [
        "ColdchainError",
        "ConfigError",
        "Fleet",
        "RegistryError",
        "Settings",
        "StoreError",
        "TelemetryRejected",
        "WriteRejected",
        "load_fleet",
        "load_settings",
    ],
    "coldchain.contract": [
        "AlarmEvent",
        "BatchMessage",
        "CONTRACT_VERSION",
        "CompartmentState",
        "CustodyEvent",
        "DoorEvent",
        "Limits",
        "ParsedTelemetry",
        "PointEncoder",
        "Position",
        "Power",
        "REASONS",
        "Sample",
        "SingleMessage",
        "alert_topic",
        "check_sample",
        "device_id_from_topic",
        "device_topic",
        "event_json_schema",
        "field_path",
        "parse_accepted_whole",
        "parse_event",
        "parse_message",
        "parse_telemetry",
        "screen_sample",
        "shared_subscription",
        "telemetry_json_schema",
        "ts_ms",
    ],
    "coldchain.alerts": [
        "Decision",
        "RoutingConfig",
        "default_routing",
        "escalations_started",
        "load_routing",
        "parse_routing",
        "quiet_until_ms",
        "route_alert",
    ],
    "coldchain.custody": [
        "ACTION_ORDER",
        "CustodyScan",
        "DEFAULT_GRACE_MS",
        "ProblemCode",
        "SequenceProblem",
        "fleet_problem",
        "sequence_problems",
        "settled_problems",
        "time_problem",
    ],
    "coldchain.epcis": [
        "COLDCHAIN_NS",
        "CustodyRecord",
        "EPCIS_CONTEXT",
        "ShipmentRecord",
        "biz_step",
        "document_event_hashes",
        "document_prehashes",
        "epcis_document",
        "epcis_schema",
        "event_hash",
        "prehash",
        "validate_epcis",
    ],
    "coldchain.exceptions": [
        "ColdchainError",
        "ConfigError",
        "LeaseLost",
        "ProfileError",
        "RecordConflict",
        "RecordInvalid",
        "RecordNotFound",
        "RecordRejected",
        "RegistryError",
        "SpoolCorrupt",
        "SpoolError",
        "SpoolFull",
        "StoreError",
        "TelemetryRejected",
        "WriteRejected",
    ],
    "ingest": [
        "Accepted",
        "CustodyChange",
        "DeadLetter",
        "Decoded",
        "Delivery",
        "EvaluateStage",
        "EventOutcome",
        "Health",
        "IngestMetrics",
        "IngestService",
        "MetricsServer",
        "MqttSource",
        "Pipeline",
        "Processed",
        "Spool",
        "SpoolDrainer",
        "SpooledMessage",
        "Validated",
        "decode",
        "process_delivery",
        "process_event",
        "validate",
    ],
    "dashboards": [
        "BOARDS",
        "DATASOURCE",
        "DATASOURCE_UID",
        "Geomap",
        "MarkerLayer",
        "Threshold",
        "device_health",
        "excursions_overview",
        "fleet_overview",
        "render",
        "store_overview",
        "vehicle_detail",
        "write",
    ],
    "deploy": ["Influxd", "Mosquitto", "ServiceError", "Services", "free_port"],
    "deploy.backup": ["BackupError", "BackupManifest", "backup", "registry_path", "restore"],
    "deploy.broker_users": [
        "BrokerUsers",
        "BrokerUsersError",
        "DEFAULT_INGEST_USERS",
        "DEFAULT_OPERATOR_USERS",
        "RULES_SECRET_KEY",
        "acl_text",
        "fleet_device_users",
        "parse_names",
        "write_broker_users",
    ],
    "deploy.postgres": ["Postgres", "find_pg_binary"],
    "reports": [
        "Acknowledgement",
        "Clock",
        "ReportExcursion",
        "ReportLeg",
        "ShipmentReport",
        "render_report_html",
        "render_report_pdf",
    ],
    "services": [
        "AcknowledgementCreate",
        "CustodyEventCreate",
        "CustodyLimits",
        "CustodyService",
        "ExcursionService",
        "Principal",
        "Services",
        "ShipmentCancel",
        "ShipmentCreate",
        "ShipmentFilters",
        "ShipmentPage",
        "ShipmentPatch",
        "ShipmentService",
        "build_services",
        "cli_principal",
        "open_services",
        "parse",
    ],
    "simulators.replay_clock": [
        "IngestLike",
        "ReplayClock",
        "ReplayProgress",
        "ingest_progress",
    ],
    "timeseries": ["InfluxClient", "Series"],
    "simulators": [
        "Fault",
        "GroundTruth",
        "SCENARIO_DIR",
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
    ],
}

IO_CLIENTS = {
    "paho",
    "httpx",
    "sqlalchemy",
    "sqlite3",
    "psycopg",
    "fastapi",
    "influxdb_client",
    "requests",
    "urllib3",
}


def test_pinned_lists_are_sorted_and_unique() -> None:
    for name, pinned in PINNED.items():
        assert pinned == sorted(set(pinned)), name


@pytest.mark.parametrize("module_name", sorted(PINNED))
def test_all_is_pinned(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), f"{module_name}.__all__ has duplicates"
    assert sorted(exported) == PINNED[module_name], (
        f"{module_name}.__all__ changed: update the pin only if the API change is intended"
    )


@pytest.mark.parametrize("module_name", sorted(PINNED))
def test_every_exported_name_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []


def test_errors_share_one_base() -> None:
    import coldchain.exceptions as exc

    for name in exc.__all__:
        assert issubclass(getattr(exc, name), exc.ColdchainError), name


def test_domain_library_imports_no_io_client() -> None:
    code = (
        "import coldchain, coldchain.contract, coldchain.rules, coldchain.epcis, json, sys; "
        "import coldchain.custody; "
        "coldchain.epcis.validate_epcis({}); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    modules = json.loads(out)
    assert "coldchain.contract" in modules and "pydantic" in modules  # the probe really ran
    assert "jsonschema" in modules  # the EPCIS validator was loaded too
    leaked = sorted(m for m in modules if m.split(".")[0] in IO_CLIENTS)
    assert leaked == [], f"the domain library pulled in I/O clients: {leaked}"
