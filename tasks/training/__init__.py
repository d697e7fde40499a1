"""What every kind's training shares: the TensorFlow set-up of a worker (``tf_setup``),
the fit loop and its epoch recorder (``fit``), the typed records and the recorder of run
results (``records``), and the classifiers' scoring and baseline (``classifier``)."""
