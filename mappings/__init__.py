"""Pure transformations: HL7 v2 to FHIR, referral to minimal packet, outcomes to Observations."""
