"""HTTP surfaces: FHIR at /fhir, the VCSE JSON API, IG and admin APIs, OAuth2, HL7 v2."""
