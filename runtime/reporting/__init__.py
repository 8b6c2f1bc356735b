"""Libraries of the `report` job (`runtime/report.py` is the program), one per step of its pipeline:

  collect.py            read the results of every job of the grid (bench results, train metrics,
                        funnels, unfinished jobs) from the build folder
  summary.py            the numbers: per cell, stage and benchmark; the best cell (summary.json)
  figures.py            the matplotlib figures
  checkpoints.py        every evaluated checkpoint on one step axis; the best per benchmark
  samples.py            the rollout samples: read them, the HTML sample browser
  render.py             index.html, README.md and summary.json
  tracking_summary.py   the W&B summary run

None of them reads a job file's config or imports a program: the report program reads its job
once and passes plain values in.
"""
