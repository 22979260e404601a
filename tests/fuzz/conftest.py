"""Hypothesis profiles for the decoder fuzz tests.

``make fuzz`` sets ``P2PRPC_FUZZ_PROFILE=fuzz`` (10,000 examples a test, no deadline); otherwise,
as in ``make test``, the ``fuzz-ci`` profile runs a few hundred. The tests apply the profile
themselves (``settings(FUZZ)``), so that selecting one changes no other test of the session.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "fuzz", max_examples=10_000, deadline=None, suppress_health_check=_SLOW_OK, print_blob=True
)
settings.register_profile(
    "fuzz-ci", max_examples=200, deadline=None, suppress_health_check=_SLOW_OK, print_blob=True
)
