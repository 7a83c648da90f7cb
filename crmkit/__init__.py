"""Shared runtime kit of the services: settings, Kafka batch consumption with a DLQ, MongoDB, HTTP."""
