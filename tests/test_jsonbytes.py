"""The JSON of the hub's records and of the transactions table's rows keeps every value a
partner sent exactly: orjson where it can, the standard library where orjson cannot."""

import json
import math
from pathlib import Path

from faust.serializers import codecs

from hub.kafka import codec as jsonbytes
from hub.kafka import faust_app
from hub.runtime import agents

BIG = 2**70 + 1  # an ISO 10161 INTEGER kept in `extensions` may be this large


def test_integers_beyond_64_bits_survive_a_row_round_trip() -> None:
    codec = codecs.get_codec(faust_app.ROW_CODEC)
    row = {"id": "t1", "request": {"extensions": {"iso10161": {"serial": BIG}}}}
    data = codec.dumps(row)
    assert codec.loads(data) == row
    assert type(codec.loads(data)["request"]["extensions"]["iso10161"]["serial"]) is int


def test_what_orjson_writes_is_the_same_json() -> None:
    value = {"a": [1, 2.5, None, True], "é": "ü\\u2028", "n": {"k": "v"}}
    assert json.loads(jsonbytes.dumps(value)) == value
    assert jsonbytes.loads(jsonbytes.dumps({"big": BIG})) == {"big": BIG}


def test_nan_written_by_the_standard_library_is_read_back() -> None:
    assert math.isnan(jsonbytes.loads(json.dumps({"x": float("nan")}))["x"])


def test_the_transactions_table_writes_and_recovers_rows_with_the_row_codec(
    tmp_path: Path,
) -> None:
    from hub.runtime import app as assembly
    from hub.runtime.settings import Settings
    from tests.test_lifecycle import DIRECTORY

    settings = Settings(data_dir=tmp_path)
    registry = assembly.connectors(settings)
    app = agents.create_app(
        settings, DIRECTORY, "127.0.0.1:1", registry, {}, {}, fetch_wait_ms=10, delivering=set()
    )
    table = app.tables["transactions"]
    assert table.value_serializer == faust_app.ROW_CODEC
    assert table.data.value_serializer == faust_app.ROW_CODEC  # the store recovery reads with
