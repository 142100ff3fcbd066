"""Herald's benchmarks: six programs that print figures and one JSON line each (see bench/README.md)."""
