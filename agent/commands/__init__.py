"""Sub-commands of `firegate`, one module each."""
