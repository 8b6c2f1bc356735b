"""rlspec.runtime.data: prompt data for curation, training and benchmarks.

`sources.read_source` reads `hf://`, local files and `builtin://` generators into the normalised
schema of `records.py`; `filters.FILTERS` are the curation filters by name; `funnel.apply_filters`
runs them in order and accounts for every drop; `records.read_prompts` reads a curated
`prompts.parquet` back; `builtin.generate` is the offline data generator behind `builtin://`.
"""
