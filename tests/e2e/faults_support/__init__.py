"""Support for the fault suite (tests/e2e/test_faults.py) and its full-size run (bench/faults.py):
the deterministic load (``plan``), the probes around ingest (``probes``), one run and its
comparison with the baseline (``run``), and the faults (``faults``)."""
