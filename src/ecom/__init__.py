"""E-commerce sales analytics on ClickHouse: generator, bronze loader, warehouse client, CLI."""
