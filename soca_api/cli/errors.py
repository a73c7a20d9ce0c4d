"""How a command reports a refused operation."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from soca_api.errors import ApiError


@contextmanager
def reported() -> Iterator[None]:
    """An ApiError becomes the command's error (its message, exit status 1). The service
    that refused has already audited the refusal."""
    try:
        yield
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
