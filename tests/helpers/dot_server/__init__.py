"""A minimal Django project serving django-oauth-toolkit for the real-server tests.

Started by ``run.py`` (see the ``dot_server`` fixture in ``tests/conftest.py``).
DOT's own code runs as it ships; this project only configures it and adds a
protected resource and a read-only stats view for the assertions.
"""
