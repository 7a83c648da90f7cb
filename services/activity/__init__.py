"""The activity service."""
