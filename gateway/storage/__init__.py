"""Storage of FHIR resources: the repository (tenancy enforced here) and search parameters as data."""
