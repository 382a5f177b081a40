"""Consent records and the disclosure policy decision; knows nothing about HTTP."""
