"""Hypothesis profiles for the property-based suites: ``ci`` (the default here) and ``long``.

``ci`` is bounded and derandomized, so a CI run tries the same inputs every time (and the
fuzz figure in the README is exact); ``long`` draws many more, differently each run.
Neither writes Hypothesis' example database into the repository.

``pytest --hypothesis-profile=long`` looks the profile up before test modules are imported,
so this module must be loaded early: ``pytest -p tests.hypothesis_profiles
--hypothesis-profile=long``, or import it from tests/conftest.py.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

CI = "ci"
LONG = "long"

# The Slack surface's properties talk to a real server: no per-example deadline (timing is a
# property of its own), and one server serves every example of a test on purpose.
_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
settings.register_profile(CI, max_examples=200, derandomize=True, **_COMMON)  # type: ignore[arg-type]
settings.register_profile(LONG, max_examples=2500, **_COMMON)  # type: ignore[arg-type]


def active() -> settings:
    """The ``long`` profile when it was asked for, else ``ci``: a test decorated with this
    keeps the profile's example count instead of Hypothesis' default of 100."""
    return settings.get_profile(LONG if settings.get_current_profile_name() == LONG else CI)


CHEAP = 5.0  # in-process examples cost well under a millisecond: five times the profile's
ONE_PROCESS_EACH = 0.1  # a subprocess each (about 0.3 s): a tenth


def examples(times: float) -> settings:
    """The active profile (``ci``, or ``long`` when asked for) with ``times`` its example
    count, so that ``long`` runs more of every property, cheap or not."""
    profile = active()
    return settings(profile, max_examples=max(3, round(profile.max_examples * times)))
