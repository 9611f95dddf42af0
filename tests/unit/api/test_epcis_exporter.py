"""The EPCIS exporter's options are checked at start-up, naming the variable to fix."""

from __future__ import annotations

import pytest

from api.epcis import EpcisExporter
from coldchain.exceptions import ConfigError
from coldchain.fleet import Fleet
from coldchain.settings import EpcisSettings, load_settings


def test_a_base_uri_that_is_no_http_uri_fails_at_loading() -> None:
    with pytest.raises(ConfigError, match="COLDCHAIN_EPCIS__BASE_URI"):
        load_settings(epcis={"base_uri": "truck-jy-01"})
    with pytest.raises(ConfigError, match="COLDCHAIN_EPCIS__SSCC_COMPANY_PREFIX_LENGTH"):
        load_settings(epcis={"sscc_company_prefix_length": 13})


def test_the_exporter_refuses_what_the_document_builder_would() -> None:
    # Passes the settings' pattern, but "|" is no URI path character.
    settings = EpcisSettings(base_uri="https://acme.example/a|b")
    with pytest.raises(ConfigError, match=r"^COLDCHAIN_EPCIS__BASE_URI="):
        EpcisExporter(None, None, Fleet([]), settings)  # type: ignore[arg-type]
    EpcisExporter(None, None, Fleet([]), EpcisSettings())  # type: ignore[arg-type]
