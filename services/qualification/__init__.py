"""The qualification service."""
