"""Outbound delivery: the outbox worker, webhook signing, and the delivery error tree."""
