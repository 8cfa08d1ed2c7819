"""`python -m reasonloop.cli`."""

from reasonloop.cli import app

app()
