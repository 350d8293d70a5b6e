"""Measurement on a device: device choice and the one training step (`device`), the device gate
that keeps timings apart (`device_gate`), the hardware fingerprint, parameter/MAC counts and step
timing (`costs`), the training-step cost S (`step_cost`) and its per-machine part table
(`step_table`, `calibrate`). Imports `nas.model`, `nas.records`, `nas.spec`."""
