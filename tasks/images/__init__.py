"""images tasks (book ch. 5.2-5.3).

* :mod:`~dlpipe.tasks.images.folders`: split folder naming and listing.
* :mod:`~dlpipe.tasks.images.split`: split a flat Kaggle folder into class folders.
* :mod:`~dlpipe.tasks.images.sniff`: format, header size, EXIF orientation from bytes.
* :mod:`~dlpipe.tasks.images.decode`: the pipeline's one decoder (``DECODER_VERSION``).
* :mod:`~dlpipe.tasks.images.validate`: keep the good files, list the bad.
* :mod:`~dlpipe.tasks.images.preprocess`: preprocessing ids and functions.
* :mod:`~dlpipe.tasks.images.augment`: the book's augmentation layers.
* :mod:`~dlpipe.tasks.images.dataset`: ``tf.data`` pipelines of image batches.
* :mod:`~dlpipe.tasks.images.demo`: demo folders from images shipped in packages.
* :mod:`~dlpipe.tasks.images.prepare`, :mod:`~dlpipe.tasks.images.train`: the study's
  prepare and train steps; :mod:`~dlpipe.tasks.images.inputs`: what each family is fed.
* :mod:`~dlpipe.tasks.images.heads`: heads on cached features trained jointly
  (``training.joint_heads``, issue 17).
"""
