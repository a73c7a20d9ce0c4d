"""Flask's JSON provider with orjson doing the encoding of answers.

A listing of 1,000 jobs is about 0.9 MB of JSON: the standard encoder took 8-11 ms of it,
orjson 1 ms (bench/side_by_side.py, docs/benchmarks.md). The output is what Flask's own
provider gives: keys sorted, compact, dates as HTTP dates, dataclasses as objects. Only
the encoding of the objects Flask's provider encodes the same way is handed to orjson;
anything else (an `indent` of debug mode, keys that are not strings, integers past 64
bits) goes through Flask's own provider.
"""
from __future__ import annotations

import json
import re
from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

_OPTIONS = (orjson.OPT_SORT_KEYS
            # Flask shows these its own way (HTTP dates, asdict): let its `default` do it.
            | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS)
_COMPACT = (",", ":")


class OrjsonProvider(DefaultJSONProvider):
    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs and kwargs != {"separators": _COMPACT}:
            return super().dumps(obj, **kwargs)
        try:
            return orjson.dumps(obj, default=self.default, option=_OPTIONS).decode()
        except TypeError:  # orjson.JSONEncodeError: non-string keys, a 65-bit integer, ...
            return super().dumps(obj, **kwargs)


# orjson turns an integer past 64 bits into a float: any run of 19 digits (a number that
# may be one, or just a long string) goes to the standard decoder, which keeps it exact.
_LONG_DIGITS = re.compile(r"[0-9]{19}")


def loads_stored(text: str | bytes) -> Any:
    """JSON columns as the database gives them back (the engine's json_deserializer): orjson,
    or the standard decoder where the two could differ (long numbers, NaN)."""
    if _LONG_DIGITS.search(text if isinstance(text, str) else text.decode()):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN, Infinity: the standard decoder's extensions
        return json.loads(text)
