"""Test configuration.

Under CI (CI=true) hypothesis is derandomized: every run draws the same examples, so kernels
compiled by an earlier run on the same machine come from ember's disk cache. Locally examples
vary from run to run, which is what finds new bugs.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))
