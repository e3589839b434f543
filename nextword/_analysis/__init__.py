"""Analysis of a model on a text: evaluation, explanation, plotting."""
