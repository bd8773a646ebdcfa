"""Tests that need Debian packages (.ci/apt-packages.txt): skip here, fail in CI."""

import os

import pytest


def skip_unless_installed(missing: str | None) -> None:
    """Skip a test whose system packages are missing (``missing`` says why), except where
    .ci/run installed them (CDREPRO_SYSTEM_PACKAGES=installed): there a missing tool is a
    broken install step, and the test fails instead of hiding it."""
    if missing is None:
        return
    if os.environ.get("CDREPRO_SYSTEM_PACKAGES") == "installed":
        pytest.fail(f"{missing}, although .ci/run reported .ci/apt-packages.txt installed")
    pytest.skip(missing)
