"""dbt adapter plugin `type: chdb`: dbt-clickhouse on the embedded ClickHouse engine.

Everything SQL is dbt-clickhouse's; only the connection differs. Macros dispatch to
`clickhouse__*` through the plugin dependency, so models run unchanged on `server`.
"""

from dbt.adapters.base import AdapterPlugin

from dbt.adapters.chdb.connections import ChdbConnectionManager, ChdbCredentials
from dbt.adapters.chdb.impl import ChdbAdapter
from dbt.include import chdb

Plugin = AdapterPlugin(
    adapter=ChdbAdapter,
    credentials=ChdbCredentials,
    include_path=chdb.PACKAGE_PATH,
    dependencies=["clickhouse"],
)

__all__ = ["ChdbAdapter", "ChdbConnectionManager", "ChdbCredentials", "Plugin"]
