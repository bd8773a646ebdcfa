"""environment.yml (conda users) and pyproject.toml (pip users) must name the same packages."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _split(requirement: str) -> tuple[str, str]:
    """``name>=1,<2`` -> (``name``, ``>=1,<2``); both files use pip's specifier syntax."""
    match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(.*)$", requirement)
    assert match, requirement
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["test"]
    return dict(_split(r) for r in reqs)


def environment_requirements() -> tuple[dict[str, str], list[str]]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    found: dict[str, str] = {}
    pip_section: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_section = dep["pip"]
            continue
        name, spec = _split(dep)
        if name in ("python", "pip"):
            continue
        found[name] = spec
    for dep in pip_section:
        if dep.startswith("-e"):
            continue
        name, spec = _split(dep)
        found[name] = spec
    return found, pip_section


def test_environment_and_pyproject_list_the_same_packages_and_versions():
    env, _ = environment_requirements()
    assert env == pyproject_requirements()


def test_environment_installs_the_package_and_pinned_torch_through_pip():
    _, pip_section = environment_requirements()
    assert "-e ." in pip_section
    assert "torch==2.14.1" in pip_section and "torchvision==0.29.1" in pip_section


def test_python_version_is_allowed_by_pyproject():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python == "python=3.11" and ">=3.11" in requires


def test_a_missing_system_package_skips_here_but_fails_where_ci_installed_them(monkeypatch):
    from system_packages import skip_unless_installed

    skip_unless_installed(None)  # nothing missing: the test just goes on
    monkeypatch.delenv("CDREPRO_SYSTEM_PACKAGES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no pdflatex"):
        skip_unless_installed("no pdflatex")
    monkeypatch.setenv("CDREPRO_SYSTEM_PACKAGES", "installed")
    with pytest.raises(pytest.fail.Exception, match="no pdflatex, although .ci/run"):
        skip_unless_installed("no pdflatex")
