"""Benchmarks: requests-tokenrotate side by side with requests-oauthlib, Authlib, google-auth.

Run everything with ``python -m bench`` (``--quick`` for a short run, ``--help`` for
the experiment selection). Only loopback servers are used.
"""
