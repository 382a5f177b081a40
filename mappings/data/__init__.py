"""Data files of the referral packet (its JSON Schema), shipped with the package."""
