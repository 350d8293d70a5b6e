"""The Ray Tune backend, by concern: `cluster` (joining, fitting trials on nodes), `trainable`
(the trial in a Ray actor), `searcher` (Tune's Searcher on the run's study). The only package
that imports ray; `nas.search.ray_backend` is its entry point."""
