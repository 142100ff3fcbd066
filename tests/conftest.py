"""Shared by every test tier."""

import os

# Set before any herald module is imported: Powertools reads these at import, boto3 when it builds
# a client. setdefault keeps whatever the shell or a tier's own fixture already chose.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "herald")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Herald")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
