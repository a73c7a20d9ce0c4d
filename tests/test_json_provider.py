"""The orjson provider answers exactly what Flask's own provider would."""
from __future__ import annotations

import dataclasses
import decimal
import json
import uuid
from datetime import UTC, date, datetime

import pytest
from flask import Flask
from flask.json.provider import DefaultJSONProvider

from soca_api.json_provider import OrjsonProvider


@dataclasses.dataclass
class Point:
    x: int
    y: int


@pytest.fixture
def providers():
    app = Flask(__name__)
    return OrjsonProvider(app), DefaultJSONProvider(app)


@pytest.mark.parametrize("value", [
    {"b": 1, "a": [1, 2.5, None, True], "c": {"z": "é", "y": "\u2028"}},
    {"when": datetime(2026, 12, 2, 7, 1, 2, tzinfo=UTC), "day": date(2026, 12, 2)},
    {"point": Point(1, 2), "id": uuid.UUID(int=7), "amount": decimal.Decimal("1.50")},
    {"big": 2**70},                  # past 64 bits: Flask's provider takes it
    {1: "one", 2: "two"},            # keys that are not strings: Flask's provider takes it
])
def test_same_value_as_flask(providers, value):
    fast, flask_own = providers
    assert json.loads(fast.dumps(value)) == json.loads(flask_own.dumps(value))


def test_sorted_and_compact_like_flask(app):
    with app.test_request_context():
        body = app.json.response({"b": 1, "a": {"d": 2, "c": 3}}).get_data(as_text=True)
    assert body == '{"a":{"c":3,"d":2},"b":1}\n'


def test_indent_goes_through_flask(providers):
    fast, _ = providers
    assert fast.dumps({"a": 1}, indent=2) == '{\n  "a": 1\n}'


def test_the_app_uses_it(app):
    assert isinstance(app.json, OrjsonProvider)


@pytest.mark.parametrize("text", ['{"a": [1, "é", null]}', '{"big": 123456789012345678901234567890}',
                                  '{"low": -9223372036854775809}', '[NaN]', '{"f": 0.1234567890123456789}'])
def test_stored_json_decodes_as_the_standard_decoder_does(text):
    from soca_api.json_provider import loads_stored

    decoded, expected = loads_stored(text), json.loads(text)
    assert repr(decoded) == repr(expected)  # NaN != NaN: compare the shapes


def test_the_engine_decodes_json_columns_with_it(app):
    from soca_api.extensions import db
    from soca_api.json_provider import loads_stored

    with app.app_context():
        assert db.engine.dialect._json_deserializer is loads_stored
