"""The `docqa` command (an entry point, like the API and the DAGs): `cli.main:app`."""
