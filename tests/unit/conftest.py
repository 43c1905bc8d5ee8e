"""Unit-test set-up: keep Hypothesis's caches out of the checkout.

Hypothesis writes caches (constants, unicode data) under ``.hypothesis/`` in the working
directory even with ``database=None``; point it at a temporary folder instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / f"conveyor-unit-hypothesis-{os.getuid()}")
