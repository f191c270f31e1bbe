"""Dagster code location of the pipeline: raw exports -> bronze -> silver -> gold -> dashboard.

`definitions.py` assembles what the other modules define: the raw exports and the bronze
landing (`assets_raw`, `assets_ingest`), the dbt project (`assets_dbt`), the dashboard
(`assets_report`), checks, jobs, the schedule and the sensors. The warehouse target comes
from `ecom.config.Settings` (DBT_TARGET), the same place the CLI and dbt read it from.

Modules whose functions become ops (assets, checks, sensors) leave out
`from __future__ import annotations`: Dagster reads their parameter annotations (run config,
resources) as objects when it builds the definitions.
"""
