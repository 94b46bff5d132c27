"""The files of each fitted outcome: one table, read by the Snakemake rules (their outputs,
and so `all_targets`) and by the writers (`summarize.write_summaries`, `plots.plot_outcome`).

Keys are the rules' names for the outputs; values the file names in the step's folder.
Standard library only: the Snakefile reads it at every start.
"""

SUMMARIES = {   # results/analysis/{outcome}/
    "importance": "importance.csv",            # each factor's importance per scope: mean, sd, 90% HDI, P(first)
    "ranks": "ranks.csv",                      # P(rank = k) per scope: the headline output
    "estimands": "estimands.csv",              # every estimand's summary and rank
    "agreement": "estimand_agreement.csv",     # Kendall's tau between the estimands' rankings
    "classical": "classical.csv",              # the ANOVA eta^2 ranks beside the Bayesian ones
    "interactions": "interactions.csv",        # each pair's interaction importance (interactions on)
    "hypotheses_table": "hypotheses.csv",      # each hypothesis per scope: P(holds), Kendall's tau
    "hypotheses": "hypotheses.json",           # the same with every pairwise claim
    "diagnostics": "diagnostics.json",         # sampler health, the model check (non-additivity), missing runs
    "provenance": "provenance.json",           # what made the summaries
}

FIGURES = {     # results/plots/{outcome}/: PNG for the report, SVG to edit
    "ranks": "ranks.png",
    "ranks_svg": "ranks.svg",
    "importance": "importance.png",
    "importance_svg": "importance.svg",
    "level_effects": "level_effects.png",
    "level_effects_svg": "level_effects.svg",
    "ppc": "ppc.png",
    "estimands": "estimands.png",
    "diagnostics": "diagnostics.png",
}
