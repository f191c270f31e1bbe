"""`make lint` stays clean: ruff on the Python, sqlfluff on the models and macros.

sqlfluff's dbt templater compiles the project, as dbt does: its target and log folders and the
warehouse it asks whether an incremental model exists yet are temporary ones, never the
checkout's. An empty warehouse means the models are linted as a first build renders them.
"""

from __future__ import annotations

import subprocess

from conftest import BIN, ROOT, ecom_env

LINTERS = (
    ("ruff", "check", "src", "tests", "orchestration"),
    ("sqlfluff", "lint", "models", "macros"),
)


def test_ruff_and_sqlfluff_find_nothing(tmp_path):
    env = ecom_env(tmp_path / "raw", tmp_path / "warehouse")
    failures = []
    for program, *args in LINTERS:
        result = subprocess.run([str(BIN / program), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                                timeout=600)
        if result.returncode != 0:
            failures.append(f"{program} {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    assert not failures, "\n\n".join(failures)
