"""`train` job: one GRPO stage, strict on-policy by default, on DeepSpeed.

    python -m rlspec.runtime.train --job jobs/train/<id>.json --context context.json

Per step: take the next prompts (seeded shuffle, epochs), sample `group_size` responses each with the
rollout engine at the stage's length and temperature, grade them (math grader / code sandbox), turn
rewards into group advantages, optimise the clipped token loss (1 update per batch = strict
on-policy), push the new weights into the engine in place, log, and checkpoint on schedule. A killed
job resumes from its newest complete checkpoint and ends with the same weights as an uninterrupted
run. Output: `<output_dir>/model/` (an HF model folder the next stage and benchmarks load),
`metrics.jsonl`, and `done.json` last.

Launch: a job with more than one rank, started by the workflow (no launcher around it), runs itself
again as its ranks: `torchrun` on this node, or in a multi-node Slurm allocation one `torchrun` per
node through `srun` (`rlspec.runtime.grpo.distributed.launch_command`; the line is printed first,
and the build folder's `launch/<id>.txt` shows it).
"""

from __future__ import annotations

import sys

from rlspec.runtime.job import JobError, load_job, parse_args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args("train", argv)
    try:
        job = load_job(args.job, "train", args.context)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from rlspec.runtime.grpo import distributed
    if job.config.ranks > 1 and not distributed.launched():
        return distributed.relaunch(job.config.ranks, argv)
    from rlspec.runtime.grpo.trainer import Trainer, TrainError
    try:
        trainer = Trainer(job)
        trainer.setup()
        trainer.resume()
        trainer.train()
        trainer.finish()
    except (TrainError, distributed.CollectiveError) as exc:
        print(f"error: {job.label} ({job.id}): {exc}", file=sys.stderr)
        return 1
    distributed.shutdown()  # after finish's closing barrier: every rank is done with every collective
    return 0


if __name__ == "__main__":
    sys.exit(main())
