"""A search as a library call (`run.run_search`) and everything one trial goes through: the
lifecycle (`lifecycle`: attempt, conclude, finish_trial), its one failure classifier (`failure`),
the trial's measurement and proxy training (`trial`), the run's study and tables (`study`,
`run_table`, `base`), liveness, and the backends behind one protocol (`backend`):
`optuna_backend`, and `ray_backend` with `raytune/` (the only code that imports ray).

Imports `nas.training`, `nas.measure`, `nas.model`, `nas.report`, `nas.records`, `nas.spec`."""
