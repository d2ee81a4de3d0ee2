"""Trained runs on AIMS test and the external benchmarks, and the claims scoreboard built from their records."""
