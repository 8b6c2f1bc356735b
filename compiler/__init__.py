"""rlspec.compiler: YAML spec -> validated, expanded, rendered Snakemake workflow (pure Python, no torch)."""
