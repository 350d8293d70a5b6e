"""Training: the data sets (`data`), proxy training of a trial (`proxy`), full training with
progressive learning (`full`, `progressive`), export, and TensorBoard event files (`tblog`).
Imports `nas.measure` (the training step, the device gate) and the layers below it."""
