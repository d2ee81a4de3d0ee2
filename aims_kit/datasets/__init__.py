"""What the kit reads: the AIMS data and its splits (with the split guard), the external benchmarks and their registry, the output formats."""
