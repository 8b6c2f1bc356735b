# rlspec: run a dataset's sources through its filters
rule curate:
    input:
        job="jobs/curate/{id}.json",
        needs=lambda wc: RLSPEC["jobs"]["curate"][wc.id]["needs"],
    output:
        done="results/curate/{id}/done.json",
    log:
        "logs/curate/{id}.log",
    threads: lambda wc: RLSPEC["jobs"]["curate"][wc.id]["resources"]["cpus"]
    resources:
        cpus_per_task=lambda wc: RLSPEC["jobs"]["curate"][wc.id]["resources"]["cpus_per_task"],
        mem_mb=lambda wc: RLSPEC["jobs"]["curate"][wc.id]["resources"]["mem_mb"],
        nodes=lambda wc: RLSPEC["jobs"]["curate"][wc.id]["resources"]["nodes"],
        runtime=lambda wc: RLSPEC["jobs"]["curate"][wc.id]["resources"]["runtime"],
        tasks=lambda wc: RLSPEC["jobs"]["curate"][wc.id]["resources"]["tasks"],
    conda:
        "../envs/sandbox.yaml"
    shell:
        # exec: the program takes the shell's place, so Slurm's stop signal reaches it and no shell
        # dies before it has checkpointed
        "exec python -m rlspec.runtime.curate --job {input.job} --context context.json > {log} 2>&1"
