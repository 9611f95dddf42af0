"""Report file names from shipment ids: safe everywhere, reversible, distinct."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from cli.report_files import MAX_STEM, report_file_stem


@pytest.mark.parametrize(
    ("shipment_id", "stem"),
    [
        ("SHP-0001", "SHP-0001"),
        ("PO-2026/0042", "PO-2026%2F0042"),
        ("(00)340123450000000017", "%2800%29340123450000000017"),
        ("ACME:778-A", "ACME%3A778-A"),
        ('a"*<>?', "a%22%2A%3C%3E%3F"),
        ("50%/x", "50%25%2Fx"),
        (".hidden", "%2Ehidden"),
        ("..x", "%2E.x"),
    ],
)
def test_stems_are_safe_and_reversible(shipment_id: str, stem: str) -> None:
    assert report_file_stem(shipment_id) == stem
    assert unquote(stem) == shipment_id


def test_ids_that_differ_give_stems_that_differ() -> None:
    ids = ["PO/1", "PO%2F1", "PO_1", "PO:1", "po/1"]
    assert len({report_file_stem(i) for i in ids}) == len(ids)


def test_a_long_id_is_cut_with_its_digest_never_inside_an_escape() -> None:
    # 128 characters that all need encoding: 384 characters encoded.
    long_a, long_b = "/" * 128, "/" * 127 + ":"
    a, b = report_file_stem(long_a), report_file_stem(long_b)
    assert a != b and len(a) <= MAX_STEM and len(b) <= MAX_STEM
    head, digest = a.rsplit("~", 1)
    assert len(digest) == 16 and set(head.split("%")[1:]) == {"2F"}
    assert len((a + ".epcis.jsonld").encode()) < 255
    for i in range(120, 129):  # every cut position
        stem = report_file_stem("A" * i + "/" * 40)
        assert all(part[:2] == "2F" for part in stem.split("~")[0].split("%")[1:]), stem
