"""The ``Registry`` facade, split along the records it serves.

Each module holds one mixin of ``Registry`` methods (one transaction per call, audit entries in
the same transaction); ``registry.repository.Registry`` combines them, so callers see one class.
The SQL of each record lives in the session-level modules beside this package
(``registry/excursions.py``, ``registry/custody.py``, ...); the mixins own transactions and the
audit entries.

| module | records |
|---|---|
| ``base`` | engine, sessions, the clock, read and write transactions |
| ``excursions`` | excursions (rules-engine upserts, acknowledgements, queries) |
| ``checkpoints`` | rules-engine checkpoints (not audited) |
| ``profiles`` | compartment profile assignments |
| ``shipments`` | shipments |
| ``custody`` | custody events and legs |
| ``audit`` | the audit log: entries, head, verification |
"""

__all__: list[str] = []
