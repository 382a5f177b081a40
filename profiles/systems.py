"""Code-system and identifier-system URLs the gateway reads and writes (see docs/codes.md)."""

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
ODS_CODE = "https://fhir.nhs.uk/Id/ods-organization-code"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

BARS_MESSAGE_EVENTS = "https://fhir.nhs.uk/CodeSystem/message-events-bars"
BARS_MESSAGE_REASON = "https://fhir.nhs.uk/CodeSystem/message-reason-bars"
BARS_SR_CATEGORY = "https://fhir.nhs.uk/CodeSystem/message-category-servicerequest"
BARS_CONSENT_CATEGORY = "https://fhir.nhs.uk/CodeSystem/consent-categories-bars"

UKCORE_PROFILE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-"

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
V3_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"

# Our own namespace for things no national code system covers (stated as local in docs/codes.md).
LOCAL_BASE = "https://sp-gateway.dev/fhir"
LOCAL_DATA_CATEGORY = f"{LOCAL_BASE}/CodeSystem/data-category"
LOCAL_REFERRAL_ID = f"{LOCAL_BASE}/Id/referral-id"
LOCAL_NEED_CATEGORY = f"{LOCAL_BASE}/CodeSystem/need-category"
VCSE_ORG_ID = f"{LOCAL_BASE}/Id/vcse-organisation"

# SNOMED CT concepts confirmed by NHS England for social prescribing (docs/design.md).
SP_REFERRAL = "871731000000106"  # Referral to social prescribing service (procedure)
SP_DECLINED = "871711000000103"  # Social prescribing declined (situation)
