rule perturb_prompts:
    input:
        samples="results/data/{bench}/samples.jsonl",
    output:
        prompts="results/prompts/{bench}/{variant}/seed{seed}.jsonl",
    log:
        "logs/perturb_prompts/{bench}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/perturb_prompts/{bench}/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=_alternation(GRID.text_variants),
    conda:
        "../../envs/eval.yaml"
    params:
        spec=variant_spec,
    shell:
        "python -m cotprobe perturb --samples {input.samples} --bench {wildcards.bench}"
        " --variant {wildcards.variant} --seed {wildcards.seed} --out {output.prompts}"
        " > {log} 2>&1"


# The image variants (cotprobe.variants.image): the same prompt file, plus the transformed images
# it refers to (named by content hash) and a report of the samples kept and skipped per category.
rule perturb_images:
    input:
        samples="results/data/{bench}/samples.jsonl",
    output:
        prompts="results/prompts/{bench}/{variant}/seed{seed}.jsonl",
        images=directory("results/prompts/{bench}/{variant}/seed{seed}.images"),
        report="results/prompts/{bench}/{variant}/seed{seed}.report.json",
    log:
        "logs/perturb_images/{bench}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/perturb_images/{bench}/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=_alternation(GRID.image_variants),
    conda:
        "../../envs/eval.yaml"
    params:
        spec=variant_spec,
    shell:
        "python -m cotprobe perturb --samples {input.samples} --bench {wildcards.bench}"
        " --variant {wildcards.variant} --seed {wildcards.seed} --out {output.prompts}"
        " --images {output.images} --report {output.report} > {log} 2>&1"
