"""Ingest counters: snapshot and the Prometheus exposition (prometheus_client), checked with
prometheus_client's own parsers."""

from __future__ import annotations

from ingest.metrics import IngestMetrics


def test_spool_depth_is_derived() -> None:
    m = IngestMetrics(spool_backlog_messages=5)
    assert m.spool_depth_messages == 5
    m.accepted_messages += 10
    m.written_messages += 12
    assert m.spool_depth_messages == 3  # 5 + 10 - 12


def test_snapshot() -> None:
    m = IngestMetrics()
    m.received_messages = 7
    m.dead_letters["malformed_json"] += 2
    m.dead_letters["unknown_device"] += 1
    snap = m.snapshot()
    assert snap["received_messages"] == 7
    assert snap["dead_letters"] == {"malformed_json": 2, "unknown_device": 1}
    assert snap["dead_letters_total"] == 3
    assert snap["spool_depth_messages"] == 0
    copied = snap["dead_letters"]
    assert isinstance(copied, dict)
    copied["x"] = 1
    assert "x" not in m.dead_letters  # a copy, not the live counter


def _families(text: str) -> dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]:
    """name -> (type, {labels: value}), parsed by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]] = {}
    for family in text_string_to_metric_families(text):
        samples = {tuple(sorted(s.labels.items())): s.value for s in family.samples}
        out[family.name] = (family.type, samples)
    return out


def test_prometheus_text_parses_with_counters_gauges_and_labels() -> None:
    m = IngestMetrics(spool_backlog_messages=2)
    m.accepted_messages = 3
    m.receive_lag_s = 1.5
    m.dead_letters["unknown_device"] = 4
    m.dead_letters["bad_topic"] = 1
    m.health.raise_problem("spool_unwritable", "disk full")
    m.sources.append(lambda: {"rules_queue_depth": 7, "rules_evaluated": 9})
    text = m.prometheus()
    families = _families(text)
    p = "coldchain_ingest_"
    assert families[p + "accepted_messages"] == ("counter", {(): 3.0})
    assert f"{p}accepted_messages_total 3.0" in text.splitlines()  # the sample's name
    assert families[p + "spool_depth_messages"] == ("gauge", {(): 5.0})
    assert families[p + "receive_lag_s"] == ("gauge", {(): 1.5})
    assert families[p + "dead_letters"] == (
        "counter",
        {(("reason", "bad_topic"),): 1.0, (("reason", "unknown_device"),): 4.0},
    )
    assert families[p + "healthy"] == ("gauge", {(): 0.0})
    assert families[p + "health_problems"] == ("gauge", {(("problem", "spool_unwritable"),): 1.0})
    assert families[p + "rules_queue_depth"] == ("gauge", {(): 7.0})
    assert families[p + "rules_evaluated"] == ("counter", {(): 9.0})
    assert p + "dead_letters_total" not in families  # a sum PromQL computes
    assert "process_cpu_seconds" in families  # prometheus_client's process collector


def test_every_counter_of_a_running_service_is_a_counter() -> None:
    from ingest.metrics import COUNTERS

    m = IngestMetrics()
    m.sources.append(lambda: {"a_new_gauge": 1})  # unknown figures default to gauges
    families = _families(m.prometheus())
    for key in COUNTERS & set(m.snapshot()):
        assert families["coldchain_ingest_" + key][0] == "counter", key
    assert families["coldchain_ingest_a_new_gauge"][0] == "gauge"


def test_the_endpoint_serves_both_exposition_formats() -> None:
    import urllib.request

    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as openmetrics_families,
    )

    from ingest.metrics import MetricsServer

    m = IngestMetrics()
    m.written_points = 12
    server = MetricsServer(m, 0)
    server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            families = _families(r.read().decode())
        assert families["coldchain_ingest_written_points"] == ("counter", {(): 12.0})
        ask = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text"})
        with urllib.request.urlopen(ask, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
            parsed = {f.name: f for f in openmetrics_families(r.read().decode())}
        assert parsed["coldchain_ingest_written_points"].samples[0].value == 12.0
    finally:
        server.stop()


def test_healthz_red_while_a_problem_is_raised() -> None:
    import urllib.error
    import urllib.request

    from ingest.metrics import MetricsServer

    m = IngestMetrics()
    server = MetricsServer(m, 0)
    server.start()
    url = f"http://127.0.0.1:{server.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            assert (r.status, r.read()) == (200, b"ok\n")
        m.health.raise_problem("spool_unwritable", "disk full")
        assert m.snapshot()["healthy"] == 0
        try:
            urllib.request.urlopen(url, timeout=10)
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            assert exc.read() == b"spool_unwritable: disk full\n"
        m.health.clear("spool_unwritable")
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
        assert m.snapshot()["healthy"] == 1
    finally:
        server.stop()


def test_prometheus_text_skips_unmeasured_gauges_and_writes_booleans_as_numbers() -> None:
    m = IngestMetrics()
    m.sources.append(lambda: {"probe_rtt_s": None, "session_present": True})
    families = _families(m.prometheus())
    assert "coldchain_ingest_probe_rtt_s" not in families
    assert families["coldchain_ingest_session_present"] == ("gauge", {(): 1.0})
