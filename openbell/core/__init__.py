"""The pure, deterministic core: commands in, events out. No I/O, clock, randomness or threads."""
