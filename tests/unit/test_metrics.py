"""Ingest counters: snapshot and Prometheus text."""

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


def test_prometheus_text() -> None:
    m = IngestMetrics(spool_backlog_messages=2)
    m.accepted_messages = 3
    m.receive_lag_s = 1.5
    m.dead_letters["unknown_device"] = 4
    m.dead_letters["bad_topic"] = 1
    text = m.prometheus()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert "coldchain_ingest_accepted_messages 3" in lines
    assert "coldchain_ingest_spool_depth_messages 5" in lines
    assert "coldchain_ingest_receive_lag_s 1.5" in lines
    assert "coldchain_ingest_dead_letters_total 5" in lines
    labelled = [x for x in lines if x.startswith("coldchain_ingest_dead_letters{")]
    assert labelled == [
        'coldchain_ingest_dead_letters{reason="bad_topic"} 1',
        'coldchain_ingest_dead_letters{reason="unknown_device"} 4',
    ]
    for line in lines:  # "name value", name in the Prometheus metric-name alphabet
        name, value = line.rsplit(" ", 1)
        float(value)
        assert name.split("{")[0].replace("_", "").isalnum()


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
    lines = m.prometheus().splitlines()
    assert not [x for x in lines if x.startswith("coldchain_ingest_probe_rtt_s")]
    assert "coldchain_ingest_session_present 1" in lines
    for line in lines:
        float(line.rsplit(" ", 1)[1])
