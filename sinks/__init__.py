"""Where results go: the ClickHouse writer and its migrations, webhooks, dead-letter publishing."""
