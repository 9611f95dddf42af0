"""GS1 EPCIS 2.0 export of a shipment (docs/epcis.md): pure, no I/O client.

- ``epcis_document(record, base_uri=...)``: a ``ShipmentRecord`` as a JSON-LD
  ``EPCISDocument`` whose events carry GS1 canonical event hashes as ``eventID``;
- ``validate_epcis(document)``: errors against GS1's EPCIS 2.0 JSON Schema, formats enforced;
- ``event_hash`` / ``prehash``: the CBV 2.0 event hash of any EPCIS event.
"""

from coldchain.epcis.document import COLDCHAIN_NS, EPCIS_CONTEXT, biz_step, epcis_document
from coldchain.epcis.hashing import (
    document_event_hashes,
    document_prehashes,
    event_hash,
    prehash,
)
from coldchain.epcis.records import CustodyRecord, ShipmentRecord
from coldchain.epcis.validate import epcis_schema, validate_epcis

__all__ = [
    "COLDCHAIN_NS",
    "EPCIS_CONTEXT",
    "CustodyRecord",
    "ShipmentRecord",
    "biz_step",
    "document_event_hashes",
    "document_prehashes",
    "epcis_document",
    "epcis_schema",
    "event_hash",
    "prehash",
    "validate_epcis",
]
