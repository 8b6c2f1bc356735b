# rlspec: one GRPO stage
rule train:
    input:
        job="jobs/train/{id}.json",
        needs=lambda wc: RLSPEC["jobs"]["train"][wc.id]["needs"],
    output:
        done="results/train/{id}/done.json",
    log:
        "logs/train/{id}.log",
    threads: lambda wc: RLSPEC["jobs"]["train"][wc.id]["resources"]["cpus"]
    resources:
        cpus_per_task=lambda wc: RLSPEC["jobs"]["train"][wc.id]["resources"]["cpus_per_task"],
        gpu=lambda wc: RLSPEC["jobs"]["train"][wc.id]["resources"]["gpu"],
        mem_mb=lambda wc: RLSPEC["jobs"]["train"][wc.id]["resources"]["mem_mb"],
        nodes=lambda wc: RLSPEC["jobs"]["train"][wc.id]["resources"]["nodes"],
        runtime=lambda wc: RLSPEC["jobs"]["train"][wc.id]["resources"]["runtime"],
        slurm_extra=lambda wc: RLSPEC["jobs"]["train"][wc.id]["resources"]["slurm_extra"],
        slurm_partition=lambda wc: RLSPEC["jobs"]["train"][wc.id]["resources"]["slurm_partition"],
    conda:
        "../envs/trainer.yaml"
    shell:
        # exec: the program takes the shell's place, so Slurm's stop signal reaches it and no shell
        # dies before it has checkpointed
        "exec python -m rlspec.runtime.train --job {input.job} --context context.json > {log} 2>&1"
