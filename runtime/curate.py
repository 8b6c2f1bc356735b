"""`curate` job: see rlspec.compiler.plan for what it does.

Run by the compiled workflow as `python -m rlspec.runtime.curate --job jobs/curate/<id>.json --context context.json`.
This build validates the job file and stops: the runtime for this job kind lands with its own issue.
"""

import sys

from rlspec.runtime.job import not_implemented


def main(argv: list[str] | None = None) -> int:
    return not_implemented("curate", argv)


if __name__ == "__main__":
    sys.exit(main())
