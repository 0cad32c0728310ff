# The answer letters of one cell's generations, read by the current parser (cotprobe.parsing).
# Its version is a param here and on the judges, not on generation: a parser change re-reads the
# answers (and reruns the verdicts and metrics) but never regenerates. The optional LLM extractor
# (config `extractor`, cotprobe.extractor) reads what the rules cannot; its spec is a param here only.
rule parse_answers:
    input:
        prompts="results/prompts/{bench}/{variant}/seed{seed}.jsonl",
        generations="results/generations/{model}/{bench}/{variant}/seed{seed}.jsonl",
    output:
        parsed="results/parsed/{model}/{bench}/{variant}/seed{seed}.jsonl",
    log:
        "logs/parse_answers/{model}/{bench}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/parse_answers/{model}/{bench}/{variant}/seed{seed}.tsv"
    conda:
        "../../envs/eval.yaml"
    params:
        parser=PARSER_VERSION,
        # One value for the whole study: a constant, not a function Snakemake calls for every job.
        extractor=as_json(GRID.extractor_spec()),
    shell:
        "python -m cotprobe parse --prompts {input.prompts} --generations {input.generations}"
        " --extractor {params.extractor:q} --out {output.parsed} > {log} 2>&1"
