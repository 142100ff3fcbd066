"""Pydantic contracts: the domain, the API bodies, queue messages and what the stores answer."""
