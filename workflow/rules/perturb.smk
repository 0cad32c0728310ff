rule perturb_prompts:
    input:
        samples="results/data/{bench}/samples.jsonl",
    output:
        prompts="results/prompts/{bench}/{variant}/seed{seed}.jsonl",
    log:
        "logs/perturb_prompts/{bench}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/perturb_prompts/{bench}/{variant}/seed{seed}.tsv"
    conda:
        "../../envs/eval.yaml"
    params:
        spec=variant_spec,
    shell:
        "python -m cotprobe perturb --samples {input.samples} --bench {wildcards.bench}"
        " --variant {wildcards.variant} --seed {wildcards.seed} --out {output.prompts}"
        " > {log} 2>&1"
