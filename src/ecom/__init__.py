"""E-commerce sales analytics on ClickHouse: generator, bronze loader, warehouse client, CLI."""

__version__ = "0.1.0"
