"""Stage-entry actions: a consumer group of the leads service on its own events topic, and the webhook outbox it fills."""
