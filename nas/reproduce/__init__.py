"""`nas reproduce v2s|b0`: the paper's search at small scale, a random baseline, retraining, a report.

    runs/<name>/reproduce.yaml   what was asked (target, budgets, seeds, ...)
    runs/<name>/search/          the search (a normal run folder: nas show / nas report work on it)
    runs/<name>/random/          random search at the baseline budget (same reference, same step times)
    runs/<name>/retrain.csv      one row per retraining (architecture x seed), appended as they finish
    runs/<name>/report.md, *.png the answers

Every stage reuses what is already on disk, so running the same command again resumes an
interrupted reproduction and re-renders the report of a finished one without training.

The top layer of the library: it runs searches through `nas.search.run` and may import every
layer below it, never the command line.
"""
