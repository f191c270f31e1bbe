"""`make lint` stays clean: ruff on the Python, sqlfluff on the SQL the models render.

The test runs the Makefile's own recipe, with this interpreter's environment and without
installing anything (`-o` takes the install stamp as done). The recipe compiles the project for
sqlfluff's dbt templater into a temporary warehouse, target and log folder, never the
checkout's: an empty warehouse, so the models are linted as a first build renders them.
"""

from __future__ import annotations

import subprocess

from conftest import BIN, ROOT, ecom_env


def test_make_lint_finds_nothing(tmp_path):
    env = ecom_env(tmp_path / "raw", tmp_path / "warehouse")
    result = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", "lint", f"BIN={BIN}"],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"make lint exited {result.returncode}\n{result.stdout}\n{result.stderr}"
