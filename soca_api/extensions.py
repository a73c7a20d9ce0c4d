"""Flask extensions, created unbound here and initialised by the app factory."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
# The models' base class. mypy cannot take a base class from an attribute (db.Model,
# python/mypy#8603): to it, the models derive from the declarative base db.Model extends.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
migrate = Migrate()
csrf = CSRFProtect()


def read_row(statement: sa.Executable, parameters: dict[str, Any]) -> sa.Row[Any] | None:
    """The first row of a read-only Core statement, on a pooled connection of its own.

    For the hot reads of every API call (a verified key's epoch, a job's row): outside the
    ORM session they skip its begin, identity map and teardown, which cost more than the
    query itself (about 130 of 200 us per GET on SQLite). The connection is returned at
    once, so no read transaction outlives the call and later reads see every commit.
    """
    with db.engine.connect() as connection:
        return connection.execute(statement, parameters).first()
