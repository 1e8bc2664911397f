"""Coar: component attribution by modelling model computation, and Coar-Edit.

Point it at any model: a :class:`~coar.components.ComponentSpec` names the
components, :class:`~coar.masking.MaskedModel` evaluates many ablated models in
one batch, :mod:`coar.regression` fits one linear model per example, and
:mod:`coar.evaluate` scores the attributions on fresh ablations.
"""

__version__ = "0.1.0"
