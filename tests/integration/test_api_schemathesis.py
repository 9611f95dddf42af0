"""schemathesis against the API's own OpenAPI schema, write endpoints included: for every
operation its examples, boundary ("coverage") cases and a bounded number of generated requests,
each checked for no 5xx and an answer the schema declares (status, content type, headers, body),
invalid input refused with a 4xx, a request without the key refused, a 405 with a true
``Allow`` for a method the path does not have.

Against the real app (ASGI, in process) on a real SQLite registry and a real InfluxDB with data
(tests/api_world.py), authenticated with a real admin key, then with a regulator key scoped to
one shipper (its reads). Deterministic: a fixed seed, derandomised, no example database. What
the run wrote (odd ids, huge quantities, far-off times) must leave the API whole: afterwards
every shipment lists, shows and traces without a 5xx, and the audit log verifies.

schemathesis' own pytest integration does not run on pytest 9 (it sets a private attribute of
pytest's test items), so the test drives its engine (what ``schemathesis run`` does) and fails
listing every check that failed, with the request to reproduce it.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from schemathesis.engine.run import PhaseName
from schemathesis.schemas import BaseSchema

from deploy.launcher import Services
from tests.api_world import SHIPMENT_A, SHIPMENT_B, World, api_world

pytestmark = pytest.mark.integration

# Generated requests per operation in the fuzzing phase (examples and boundary cases come on
# top): enough to reach every parameter, small enough for about a minute in all.
MAX_EXAMPLES = 10


@pytest.fixture(scope="module")
def world(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("schemathesis")
    with api_world(services, "schemathesis", root) as w, TestClient(w.app):
        # The TestClient runs the app's lifespan (its registry, tracer, services) for the run.
        yield w


def _config(world: World, token: str, *, stateful: bool = True) -> SchemathesisConfig:
    # Half the ids drawn are the world's records, so generated requests also reach a real
    # shipment's trace and report, patch it, post its custody and acknowledge its excursions.
    known = {
        "shipments": [SHIPMENT_A, SHIPMENT_B],
        "excursions": [world.excursion_a, world.excursion_b],
        "profiles": ["chilled", "frozen"],
        "assets": ["truck-1", "store-1"],
        "compartments": ["c1", "zone-a"],
    }
    bound = {
        "path.shipment_id": "shipments",
        "query.shipment_id": "shipments",
        "body.shipment_id": "shipments",
        "path.excursion_id": "excursions",
        "body.profile": "profiles",
        "body.asset_id": "assets",
        "query.asset_id": "assets",
        "body.compartment_id": "compartments",
        "query.compartment_id": "compartments",
    }
    return SchemathesisConfig.from_dict(
        {
            "dictionaries": {name: {"values": values} for name, values in known.items()},
            "parameters": {
                key: {"dictionary": name, "probability": 0.5} for key, name in bound.items()
            },
            "seed": 20261130,
            # A shipment id's pattern (segments, none "." or "..") makes Hypothesis discard
            # some strings it draws; that is expected, not a reason to stop.
            "suppress-health-check": ["filter_too_much", "too_slow"],
            "headers": {"X-API-Key": token},
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            # Stateful: sequences along the links schemathesis infers (a created shipment's
            # Location, then its reads and writes), a few steps each.
            "phases": {"stateful": {"enabled": stateful, "max-steps": 10}},
            # Every other check stays on. This one wants a 2xx (or 401/403/404/409) for any
            # request the schema admits, but some rules cannot be written in JSON Schema: a
            # time within what InfluxDB stores and not after the server's clock, "from" before
            # "to", a configured profile, an asset of the fleet, an IANA time zone, a cursor
            # this server made. Those are 422s with a message, as docs/api.md says.
            "checks": {"positive_data_acceptance": {"enabled": False}},
        }
    )


def _run(
    world: World, token: str, *, method: str | None = None, stateful: bool = True
) -> tuple[list[str], set[str]]:
    """(every failed check of a whole schemathesis run, one line each with how to reproduce
    it; the operations it tested)."""
    config = _config(world, token, stateful=stateful)
    schema: BaseSchema = schemathesis.openapi.from_asgi("/openapi.json", world.app, config=config)
    if method is not None:
        schema = schema.include(method=method)
    problems: list[str] = []
    tested: set[str] = set()
    seen: set[tuple[str, str, str]] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            if event.status != Status.SKIP and event.phase != PhaseName.STATEFUL_TESTING:
                tested.add(event.recorder.label)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status != Status.FAILURE or check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    key = (event.recorder.label, check.name, failure.title)
                    if key not in seen:
                        seen.add(key)
                        problems.append(
                            f"{event.recorder.label}: {check.name}: {failure.title}: "
                            f"{failure.message}\n    {check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            problems.append(f"{event.label}: error: {event.value!r}")
        elif isinstance(event, events.FatalError):
            problems.append(f"fatal: {event.exception!r}")
    return problems, tested


def _operations(world: World, method: str | None = None) -> set[str]:
    paths = world.app.openapi()["paths"]
    return {
        f"{m.upper()} {path}"
        for path, ops in paths.items()
        for m in ops
        if method is None or m.upper() == method
    }


def test_api_as_admin_conforms_to_its_schema(world: World) -> None:
    problems, tested = _run(world, world.token("admin"))
    assert not problems, "\n".join(problems)
    assert tested == _operations(world)  # every operation, the writes included


def test_api_as_regulator_conforms_to_its_schema(world: World) -> None:
    problems, tested = _run(world, world.token("regulator_in"), method="GET")
    assert not problems, "\n".join(problems)
    assert tested == _operations(world, "GET")


def test_what_the_runs_wrote_leaves_the_api_whole(world: World) -> None:
    # Whatever order the tests ran in, the writes have run.
    _run(world, world.token("admin"), method="POST", stateful=False)
    admin = {"X-API-Key": world.token("admin")}
    with TestClient(world.app) as client:
        ids: list[str] = []
        url: str | None = "/v1/shipments?limit=1000"
        while url is not None:
            r = client.get(url, headers=admin)
            assert r.status_code == 200, r.text
            ids += [s["id"] for s in r.json()]
            cursor = r.headers.get("X-Next-Cursor")
            url = None if cursor is None else f"/v1/shipments?limit=1000&cursor={quote(cursor)}"
        assert len(ids) > 2, "the run registered no shipment"  # beside the world's two
        for sid in ids:
            path = "/v1/shipments/" + quote(sid, safe="/:")
            for sub in ("", "/trace", "/trace.csv"):
                r = client.get(path + sub, headers=admin)
                assert r.status_code == 200, (sid, sub, r.status_code, r.text)
        r = client.get("/v1/excursions?include_superseded=true", headers=admin)
        assert r.status_code == 200, r.text
    report = world.registry.trail.verify()
    assert report.ok, str(report)
