# Exact minimal perturbations (MILP), one job per (data set, model, norm, shard), merged per
# norm; the figure "exact vs. approximate robustness curves". Reads the `exact:` config
# section (see docs/CONTRACTS.md and README.md); the attack shards of the same
# (data set, model, norm), where they exist, warm-start every point.

EXACT = config.get("exact", {}) or {}
EXACT_SHARDS = int(EXACT.get("shards", 1))


def exact_models():
    return list(EXACT.get("models", []))


def exact_norms():
    return list(EXACT.get("norms", ["linf"]))


def exact_shard_files(dataset, model, norm):
    return [
        f"results/exact/{dataset}/{model}/{norm}/shard{i}of{EXACT_SHARDS}.npz"
        for i in range(EXACT_SHARDS)
    ]


def exact_merged_files():
    return [
        f"results/exact/{config['models'][m]['dataset']}/{m}/{n}.json"
        for m in exact_models()
        for n in exact_norms()
    ]


def exact_attack_inputs(wildcards):
    # The attacks of this norm, if the config runs them; otherwise the exact stage
    # searches the box up to exact.max_radius.
    if wildcards.norm in config["attacks"]["norms"]:
        return shard_files(wildcards.dataset, wildcards.model, wildcards.norm)
    return []


def exact_runtime_min(wildcards, threads):
    n_points = int(EXACT.get("n_points", 20))
    per_shard = -(-n_points // EXACT_SHARDS)
    return int(per_shard * float(EXACT.get("time_limit", 30)) * 1.5 / 60) + 15


rule exact_shard:
    input:
        unpack(lambda wc: model_files(wc.dataset, wc.model)),
        data="results/data/{dataset}/test.npz",
        attacks=exact_attack_inputs,
    output:
        "results/exact/{dataset}/{model}/{norm}/shard{shard}of{nshards}.npz",
    params:
        exact=EXACT,
        n_points=int(EXACT.get("n_points", 20)),
        julia_project=str(Path(workflow.basedir) / "workflow" / "julia"),
    log:
        "logs/exact/{dataset}/{model}/{norm}/shard{shard}of{nshards}.log",
    benchmark:
        "benchmarks/runs/exact/{dataset}/{model}/{norm}/shard{shard}of{nshards}.tsv"
    threads: int(EXACT.get("threads", 1))
    resources:
        mem_mb=4000,
        runtime=exact_runtime_min,
    script:
        "../workflow/scripts/exact_shard.py"


rule exact_merge:
    input:
        shards=lambda wc: exact_shard_files(wc.dataset, wc.model, wc.norm),
    output:
        "results/exact/{dataset}/{model}/{norm}.json",
    params:
        n_points=int(EXACT.get("n_points", 20)),
    log:
        "logs/exact/{dataset}/{model}/{norm}.merge.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow/scripts/exact_merge.py"


rule exact_figure:
    input:
        exact_merged_files(),
    output:
        pdf="results/figures/exact_vs_approx.pdf",
        png="results/figures/exact_vs_approx.png",
        stats="results/tables/exact_gap_statistics.tsv",
    params:
        labels=[f"{m} ({n})" for m in exact_models() for n in exact_norms()],
    log:
        "logs/figures/exact_vs_approx.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow/scripts/exact_figure.py"


rule all_exact:
    input:
        exact_merged_files(),


def exact_figure_files():
    """The exact-vs-approximate figure, if the config asks for exact solves (for all_figures)."""
    if not exact_models():
        return []
    return ["results/figures/exact_vs_approx.pdf", "results/figures/exact_vs_approx.png"]
