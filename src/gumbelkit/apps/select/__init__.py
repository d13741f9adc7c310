"""Hard selection and attention: L2X on synthetic data, concrete pixel selection, glimpses.

Three commands, one package:

* ``gumbelkit train l2x``: instance-wise feature selection on L2X's synthetic datasets
  (:mod:`gumbelkit.apps.select.l2x`);
* ``gumbelkit train select``: the concrete autoencoder's global choice of 50 pixels
  (:mod:`gumbelkit.apps.select.concrete`);
* ``gumbelkit train glimpse``: a classifier that sees k of an image's 49 patches
  (:mod:`gumbelkit.apps.select.glimpse`).

Every selector is a k-subset estimator of :mod:`gumbelkit.subsets` (or Concrete / straight-through
Gumbel-Softmax from :mod:`gumbelkit.functional` and :mod:`gumbelkit.estimators`); the loop is
:mod:`gumbelkit.apps.training`.
"""
