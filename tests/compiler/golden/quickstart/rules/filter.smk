# rlspec: keep the prompts the policy entering a stage finds hard
rule filter:
    input:
        job="jobs/filter/{id}.json",
        needs=lambda wc: RLSPEC["jobs"]["filter"][wc.id]["needs"],
    output:
        done="results/filter/{id}/done.json",
    log:
        "logs/filter/{id}.log",
    threads: lambda wc: RLSPEC["jobs"]["filter"][wc.id]["resources"]["cpus"]
    resources:
        cpus_per_task=lambda wc: RLSPEC["jobs"]["filter"][wc.id]["resources"]["cpus_per_task"],
        mem_mb=lambda wc: RLSPEC["jobs"]["filter"][wc.id]["resources"]["mem_mb"],
        nodes=lambda wc: RLSPEC["jobs"]["filter"][wc.id]["resources"]["nodes"],
        runtime=lambda wc: RLSPEC["jobs"]["filter"][wc.id]["resources"]["runtime"],
        tasks=lambda wc: RLSPEC["jobs"]["filter"][wc.id]["resources"]["tasks"],
    conda:
        "../envs/rollout.yaml"
    shell:
        # exec: the program takes the shell's place, so Slurm's stop signal reaches it and no shell
        # dies before it has checkpointed
        "exec python -m rlspec.runtime.filter --job {input.job} --context context.json > {log} 2>&1"
