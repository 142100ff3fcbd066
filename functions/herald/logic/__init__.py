"""What Herald decides: one module per capability, its dependencies passed in as the Protocols of ports.py."""
