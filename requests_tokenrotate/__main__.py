"""``python -m requests_tokenrotate``: see :mod:`requests_tokenrotate._cli`."""

from __future__ import annotations

import sys

from ._cli import main

sys.exit(main())
