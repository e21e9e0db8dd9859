"""The conformance suite (sandbox/conformance.py) on every backend, real worlds."""

from __future__ import annotations

import pytest

from sandbox.conformance import CHECKS

pytestmark = [pytest.mark.docker]


@pytest.mark.parametrize("name", list(CHECKS))
def test_conformance(backend, name):
    config, known_failures = backend
    if name in known_failures:
        pytest.xfail(f"the backend declares {name} as a known failure")
    CHECKS[name](config)
