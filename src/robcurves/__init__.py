"""robcurves: robustness curves of classifiers against minimal adversarial perturbations.

A robustness curve R(eps) is the fraction of test points whose smallest adversarial
perturbation, measured in a given norm, is at most eps. Misclassified points count at
eps = 0; points for which no adversarial example was found count at +inf.
"""

__version__ = "0.1.0"
