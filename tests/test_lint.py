"""Layering and style, checked by tools (issue 13): the import-linter contracts and ruff
settings in pyproject.toml pass on the repository, so `make test` (and CI) enforce them.

import-linter reads the package as installed: ``dlpipe.tasks`` is the folder ``tasks/``
(``[tool.setuptools.package-dir]``), which the editable install maps through an import
hook that import-linter's file walk cannot follow. The tests therefore lay out the same
mapping as a tree of links (one per source file) and run ``.venv/bin/lint-imports`` there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
BIN = Path(sys.executable).parent


def package_tree(dest: Path) -> Path:
    """Lay out the installed package ``dlpipe`` under ``dest`` as links to the sources.

    Follows pyproject.toml's ``[tool.setuptools.package-dir]`` (``"dlpipe.tasks" =
    "tasks"`` links ``tasks/**/*.py`` under ``dest/dlpipe/tasks/``), sub-folders included.

    Args:
        dest: an empty folder.

    Returns:
        ``dest``, to be the working directory of ``lint-imports``.
    """
    mapping = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in mapping.items():
        source = ROOT / folder
        target = dest.joinpath(*package.split("."))
        for path in source.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            link = target / path.relative_to(source)
            if link.exists():  # a sub-folder that is also mapped on its own
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
    return dest


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the repository's contracts, run in ``tree``."""
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache", str(PYPROJECT)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )


def ruff_check(*paths: str) -> subprocess.CompletedProcess:
    """``ruff check`` with the repository's settings (pyproject.toml), run in the repo."""
    return subprocess.run(
        [str(BIN / "ruff"), "check", "--no-cache", "--config", str(PYPROJECT), *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_contracts_are_kept(tmp_path):
    """pipelines -> tasks -> models | ensembles, one way; models and ensembles import no
    Ray, pyarrow or pandas; ensembles no Keras/TensorFlow; metrics and configs are
    leaves. Every contract is reported KEPT."""
    run = lint_imports(package_tree(tmp_path))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in out, out


def test_import_contracts_catch_an_upward_and_a_forbidden_import(tmp_path):
    """The contracts can fail: a model module importing a task (upward, through a
    function-level import) and an ensemble importing Keras are reported broken."""
    tree = package_tree(tmp_path)
    (tree / "dlpipe" / "models" / "probe_upward.py").write_text(
        "def f():\n    from dlpipe.tasks.reports import tables\n    return tables\n"
    )
    (tree / "dlpipe" / "ensembles" / "probe_keras.py").write_text("import keras\n")
    run = lint_imports(tree)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "dlpipe.models.probe_upward -> dlpipe.tasks.reports.tables" in out, out
    assert "dlpipe.ensembles.probe_keras -> keras" in out, out
    # the upward import also reaches pandas through tasks.reports.tables (the
    # no-Ray/pyarrow/pandas contract counts indirect imports) and closes a cycle
    # models -> tasks -> models (the no-cycles contract): only the leaves' contract is kept
    assert "Contracts: 1 kept, 4 broken." in out, out
    assert "- .models -> .tasks" in out or "- .tasks -> .models" in out, out


def test_ruff_passes():
    """`ruff check` (E, F, W, I, B; line length 100) finds nothing in the repository."""
    run = ruff_check(".")
    assert run.returncode == 0, run.stdout + run.stderr


def test_ruff_reports_unsorted_imports_and_long_lines(tmp_path):
    """The ruff settings can fail: unsorted imports (I001), an unused import (F401) and a
    101-character line (E501) are each reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport os\n\nprint(os.sep)\nx = '" + "a" * 95 + "'\n")
    assert len(bad.read_text().splitlines()[-1]) == 101
    run = ruff_check(os.fspath(bad))
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    for code in ("I001", "F401", "E501"):
        assert code in out, (code, out)


def ruff_format_check(*paths: str) -> subprocess.CompletedProcess:
    """``ruff format --check`` with the repository's settings, run in the repo."""
    return subprocess.run(
        [str(BIN / "ruff"), "format", "--check", "--no-cache", "--config", str(PYPROJECT), *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ruff_format_is_the_one_style():
    """Every file is as `ruff format` writes it (one style; `ruff format .` fixes it)."""
    run = ruff_format_check(".")
    assert run.returncode == 0, run.stdout + run.stderr


def test_ruff_format_reports_a_file_in_another_style(tmp_path):
    """The format check can fail: single quotes and a cramped call are reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("x = {'a':1}\nprint( x )\n")
    run = ruff_format_check(os.fspath(bad))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 file would be reformatted" in run.stdout + run.stderr
