"""JSON for the records the hub writes: orjson, a fraction of json's time on every record of
every step, with the standard library for what orjson refuses (an integer beyond 64 bits,
such as an ISO 10161 APDU's INTEGER kept in `extensions`). Read back with the standard
library: orjson would read such an integer as a float, silently. (faust's own JSON codec
switches to orjson once it is installed, so the transactions table has a codec of these two,
`hub.kafka.faust_app.ROW_CODEC`: a row with such an integer would otherwise fail to be written,
which is fatal, or come back changed after a recovery.)"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


def loads(value: bytes | str) -> Any:
    return json.loads(value)
