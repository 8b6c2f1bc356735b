# rlspec: tables and figures for the whole grid
rule report:
    input:
        job="jobs/report/{id}.json",
        needs=lambda wc: RLSPEC["jobs"]["report"][wc.id]["needs"],
    output:
        done="results/report/{id}/done.json",
    log:
        "logs/report/{id}.log",
    threads: lambda wc: RLSPEC["jobs"]["report"][wc.id]["resources"]["cpus"]
    resources:
        cpus_per_task=lambda wc: RLSPEC["jobs"]["report"][wc.id]["resources"]["cpus_per_task"],
        mem_mb=lambda wc: RLSPEC["jobs"]["report"][wc.id]["resources"]["mem_mb"],
        nodes=lambda wc: RLSPEC["jobs"]["report"][wc.id]["resources"]["nodes"],
        runtime=lambda wc: RLSPEC["jobs"]["report"][wc.id]["resources"]["runtime"],
        tasks=lambda wc: RLSPEC["jobs"]["report"][wc.id]["resources"]["tasks"],
    conda:
        "../envs/eval.yaml"
    shell:
        # exec: the program takes the shell's place, so Slurm's stop signal reaches it and no shell
        # dies before it has checkpointed
        "exec python -m rlspec.runtime.report --job {input.job} --context context.json > {log} 2>&1"
