"""The web interface's blueprint, on which every page module registers its routes."""
from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("web", __name__)
