"""Storage: the FHIR repository (who sees which resource), search parameters as data, and one module
per aggregate (resources, consents, referrals, packets, outbox) whose functions take the caller scope
(gateway/storage/scope.py) and filter by it in the SQL statement, before any limit."""
