"""Bulk import of profiles from NDJSON or CSV (the service layer of /v1/profiles/import)."""
