"""Workload and population generators (seeded, regenerable by anyone)."""
