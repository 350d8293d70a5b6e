"""Run records: the run folder's layout and tables, the settings a run was made with, file
locks and atomic writes. Imports only `nas.spec`; no torch."""
