"""Reports read from run folders: the run report (`run_report`), its plots and the statistics
(Pareto fronts, choice frequencies, Welch/TOST, trends). Imports `nas.records` and `nas.spec`
only; no torch (a counter for full-size networks is passed in by the caller that has one)."""
