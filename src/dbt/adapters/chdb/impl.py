from dbt.adapters.chdb.connections import ChdbConnectionManager
from dbt.adapters.clickhouse.impl import ClickHouseAdapter


class ChdbAdapter(ClickHouseAdapter):
    ConnectionManager = ChdbConnectionManager

