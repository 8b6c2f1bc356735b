# rlspec: build the from-scratch policy (tokenizer, init, SFT warm-up)
rule model:
    input:
        job="jobs/model/{id}.json",
        needs=lambda wc: RLSPEC["jobs"]["model"][wc.id]["needs"],
    output:
        done="results/model/{id}/done.json",
    log:
        "logs/model/{id}.log",
    threads: lambda wc: RLSPEC["jobs"]["model"][wc.id]["resources"]["cpus"]
    resources:
        cpus_per_task=lambda wc: RLSPEC["jobs"]["model"][wc.id]["resources"]["cpus_per_task"],
        mem_mb=lambda wc: RLSPEC["jobs"]["model"][wc.id]["resources"]["mem_mb"],
        nodes=lambda wc: RLSPEC["jobs"]["model"][wc.id]["resources"]["nodes"],
        runtime=lambda wc: RLSPEC["jobs"]["model"][wc.id]["resources"]["runtime"],
        tasks=lambda wc: RLSPEC["jobs"]["model"][wc.id]["resources"]["tasks"],
    conda:
        "../envs/trainer.yaml"
    shell:
        # exec: the program takes the shell's place, so Slurm's stop signal reaches it and no shell
        # dies before it has checkpointed
        "exec python -m rlspec.runtime.model --job {input.job} --context context.json > {log} 2>&1"
