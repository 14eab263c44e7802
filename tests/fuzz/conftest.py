"""Hypothesis profiles for the fuzz tests.

`quick` (the default test run): few examples per test, derandomized (the same
examples every run: a red run is a real regression, never luck), no deadline (a
loaded 2-core machine must not fail a test for being slow), no example database.
`long` (`scripts/fuzz`): many random examples, failures kept in
`test-artifacts/hypothesis/` and replayed first next time. Choose with
`HYPOTHESIS_PROFILE`; scale `long` with `FUZZ_EXAMPLES`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

from tests.support import REPO_ROOT

HOME = REPO_ROOT / "test-artifacts" / "hypothesis"
set_hypothesis_home_dir(HOME)  # not `.hypothesis/` in the checkout

# One gateway or one call serves every example of a test: a fixture per test.
_SHARED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

settings.register_profile(
    "quick",
    max_examples=30,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=_SHARED,
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "2000")),
    deadline=None,
    database=DirectoryBasedExampleDatabase(HOME / "examples"),
    suppress_health_check=_SHARED,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))
