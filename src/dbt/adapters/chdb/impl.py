from dbt.adapters.clickhouse.impl import ClickHouseAdapter

from dbt.adapters.chdb.connections import ChdbConnectionManager


class ChdbAdapter(ClickHouseAdapter):
    ConnectionManager = ChdbConnectionManager

