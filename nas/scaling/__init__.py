"""Growing a found network into a family: compound (EfficientNet B0→B7) and non-uniform
(EfficientNetV2 S/M/L) scaling and the coefficient grid search. Sits above `nas.search`, whose
trial outcome classifier its coefficient search uses."""
