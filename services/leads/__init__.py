"""Leads service: pipelines, stages and lead cards, driven by commands on Kafka."""
