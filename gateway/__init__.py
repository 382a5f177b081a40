"""The FastAPI app, HTTP/MLLP surfaces, auth, settings, storage, delivery worker and CLI."""
