"""GS1 keys and their URIs: check digits, SSCC/GLN URIs, and the constrained canonical Digital
Link form identifiers are hashed in (expected values worked out from the GS1 Tag Data Standard
and cross-checked with the reference implementation of the event hash)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coldchain.epcis.gs1 import (
    canonical_gs1_uri,
    check_digit,
    gln_uri,
    is_gln,
    is_sscc,
    sscc_epc_urn,
    sscc_uri,
)


def test_check_digits() -> None:
    # GS1 General Specifications 7.9.1 worked example: GTIN-13 629104150021 -> 3.
    assert check_digit("629104150021") == 3
    assert check_digit("401234500011") == 5  # GLN 4012345000115
    assert check_digit("04012345000000333") == 8  # SSCC 040123450000003338
    assert is_gln("4012345000115") and not is_gln("4012345000116") and not is_gln("401234500011")
    assert is_sscc("040123450000003338") and not is_sscc("040123450000003339")
    assert not is_sscc("04012345000000333x") and not is_sscc("٠٤٠١٢٣٤٥٠٠٠٠٠٠٣٣٣٨")
    with pytest.raises(ValueError):
        check_digit("12a")


def test_sscc_uris() -> None:
    assert sscc_uri("040123450000003338") == "https://id.gs1.org/00/040123450000003338"
    assert sscc_epc_urn("040123450000003338", 7) == "urn:epc:id:sscc:4012345.0000000333"
    assert sscc_epc_urn("106141412345678908", 7) == "urn:epc:id:sscc:0614141.1234567890"
    with pytest.raises(ValueError, match="SSCC"):
        sscc_uri("040123450000003339")
    with pytest.raises(ValueError, match="6 to 12"):
        sscc_epc_urn("040123450000003338", 13)


@given(st.text(alphabet="0123456789", min_size=17, max_size=17), st.integers(6, 12))
def test_an_sscc_urn_and_its_digital_link_are_one_identifier(body: str, prefix_len: int) -> None:
    sscc = body + str(check_digit(body))
    assert canonical_gs1_uri(sscc_epc_urn(sscc, prefix_len)) == sscc_uri(sscc)
    assert canonical_gs1_uri(sscc_uri(sscc)) == sscc_uri(sscc)


def test_gln_uris() -> None:
    assert gln_uri("4012345000115") == "https://id.gs1.org/414/4012345000115"
    assert gln_uri("4012345000115", "dock-1") == "https://id.gs1.org/414/4012345000115/254/dock-1"
    assert canonical_gs1_uri("urn:epc:id:sgln:4012345.00011.dock-1") == gln_uri(
        "4012345000115", "dock-1"
    )
    with pytest.raises(ValueError, match="GLN"):
        gln_uri("4012345000116")
    with pytest.raises(ValueError, match="extension"):
        gln_uri("4012345000115", "x" * 21)
    with pytest.raises(ValueError, match="extension"):
        gln_uri("4012345000115", "a/b")


@pytest.mark.parametrize(
    ("uri", "canonical"),
    [
        ("urn:epc:id:sgtin:4012345.011111.9876", "https://id.gs1.org/01/04012345111118/21/9876"),
        (
            "urn:epc:id:sgtin:0614141.112345.A!b(c)",
            "https://id.gs1.org/01/10614141123459/21/A%21b%28c%29",
        ),
        ("urn:epc:id:sscc:4012345.0000000333", "https://id.gs1.org/00/040123450000003338"),
        ("urn:epc:id:sgln:4012345.00005.0", "https://id.gs1.org/414/4012345000054"),
        ("urn:epc:id:sgln:4012345.00011.987", "https://id.gs1.org/414/4012345000115/254/987"),
        ("urn:epc:id:grai:4012345.00022.1234", "https://id.gs1.org/8003/040123450002211234"),
        ("urn:epc:id:giai:4000001.111", "https://id.gs1.org/8004/4000001111"),
        ("urn:epc:id:gsrn:4012345.0000000001", "https://id.gs1.org/8018/401234500000000012"),
        ("urn:epc:id:gdti:4012345.11111.123", "https://id.gs1.org/253/4012345111118123"),
        (
            "urn:epc:id:cpi:0614141.123ABC.123456789",
            "https://id.gs1.org/8010/0614141123ABC/8011/123456789",
        ),
        ("urn:epc:id:sgcn:4012345.67890.04711", "https://id.gs1.org/255/401234567890104711"),
        ("urn:epc:id:ginc:0614141.xyz3311cba", "https://id.gs1.org/401/0614141xyz3311cba"),
        ("urn:epc:id:gsin:0614141.123456789", "https://id.gs1.org/402/06141411234567890"),
        (
            "urn:epc:id:itip:4012345.012345.01.02.987",
            "https://id.gs1.org/8006/040123451234560102/21/987",
        ),
        ("urn:epc:id:pgln:4012345.00000", "https://id.gs1.org/417/4012345000009"),
        (
            "urn:epc:class:lgtin:4023333.002000.2019-10-07",
            "https://id.gs1.org/01/04023333020008/10/2019-10-07",
        ),
        ("urn:epc:idpat:sgtin:4012345.012345.*", "https://id.gs1.org/01/04012345123456"),
        (
            "https://id.gs1.de/01/04012345999990/21/XYZ-1234",
            "https://id.gs1.org/01/04012345999990/21/XYZ-1234",
        ),
        (
            "https://example.com/gtin/4012345999990/ser/XYZ?x=1",
            "https://id.gs1.org/01/04012345999990/21/XYZ",
        ),
        (
            "https://example.com/a/01/4012345999990/10/LOT/21/SER",
            "https://id.gs1.org/01/04012345999990/21/SER",
        ),
        (
            "https://example.com/01/04012345999990/22/CPV/10/LOT",
            "https://id.gs1.org/01/04012345999990/10/LOT",
        ),
        ("https://example.com/01/12345678/21/A", "https://id.gs1.org/01/00000012345678/21/A"),
        (
            "https://id.gs1.org/01/04012345999990/21/ab%2Fc",
            "https://id.gs1.org/01/04012345999990/21/ab%2Fc",
        ),
    ],
)
def test_canonical_digital_link(uri: str, canonical: str) -> None:
    assert canonical_gs1_uri(uri) == canonical


@pytest.mark.parametrize(
    "uri",
    [
        "https://coldchain.example/id/shipment/SHP-1",
        "https://coldchain.example/id/asset/414/compartment/4012345000115",
        "https://ref.gs1.org/cbv/BizStep-departing",
        "geo:50.947573340894124,6.922120147375441",
        "urn:epc:id:sgtin:4012345.0111111.9876",  # prefix + item reference is 14 digits
        "urn:epc:id:bogus:4012345.1",
        "https://example.com/01/04012345999990/21/A#fragment",
        "https://example.com/01/04012345999990/21/A/",
        "truck-jy-01",
    ],
)
def test_not_a_gs1_key(uri: str) -> None:
    assert canonical_gs1_uri(uri) is None
