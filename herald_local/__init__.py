"""The embedded local stack: Herald on one laptop, from template.yaml, with no Docker or AWS account."""
