"""rlspec.runtime: the programs the compiled workflow runs (`python -m rlspec.runtime.<kind> --job job.json`)."""
