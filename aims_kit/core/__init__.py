"""Plumbing every layer uses: paths, profiles and parameters, threads, processes, progress, the hub probe, results I/O."""
