"""The gunicorn entry point: `gunicorn wsgi:app` (and `flask --app wsgi ...`)."""
from soca_api import create_app

app = create_app()
