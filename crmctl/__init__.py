"""Operator tooling: the ``crm`` command, the local stack and the service launcher."""
