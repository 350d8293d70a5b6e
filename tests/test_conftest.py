"""The suite's own rules: a missing requirement skips locally and fails under CI; every test
has a timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO

pytest_plugins = ["pytester"]

_NEEDS_SOMETHING = """
from tests.conftest import require_module, skip_or_fail

def test_needs_a_server():
    skip_or_fail("PostgreSQL server binaries not installed")

def test_needs_a_module():
    require_module("no_such_module_for_nas_tests", "the Ray backend")
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_needs=_NEEDS_SOMETHING)
    pytester.syspathinsert(REPO)  # so the inner run imports this repository's tests.conftest
    return pytester


def test_missing_requirement_skips_outside_ci(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(skipped=2)


def test_missing_requirement_fails_under_ci(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*PostgreSQL server binaries not installed (CI=true*"])


def test_every_test_has_a_default_timeout(pytestconfig: pytest.Config) -> None:
    # pytest-timeout reads `timeout` from the pytest options in pyproject.toml
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert float(pytestconfig.getini("timeout")) >= 300


def test_searches_of_this_session_use_a_device_gate_of_their_own() -> None:
    # another session's searches (or a worker some test froze) cannot stall this one's
    import torch

    from nas.measure.device_gate import lock_path
    from tests.conftest import SESSION_TEMP, nas_env

    assert lock_path(torch.device("cpu")).parent == Path(SESSION_TEMP)
    assert nas_env()["TMPDIR"] == SESSION_TEMP
