"""features tasks: the conv-base feature cache (issue 5).

* :mod:`~dlpipe.tasks.features.keys`: image and base keys (what identifies a feature).
* :mod:`~dlpipe.tasks.features.store`: the content-keyed store (layout, read, write,
  list, prune).
* :mod:`~dlpipe.tasks.features.filesystems`: local or fsspec file access, atomic writes.
* :mod:`~dlpipe.tasks.features.extract`: conv base forward passes through the cache.
* :mod:`~dlpipe.tasks.features.study`: a study's features, every split, in shards.
"""
