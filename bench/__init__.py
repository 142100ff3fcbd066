"""Herald's benchmarks: seven programs that print figures and one JSON line each (see bench/README.md)."""
