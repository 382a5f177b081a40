"""The flow as plain functions over the request context: ingest, consent and packets, workflow, outcomes."""
