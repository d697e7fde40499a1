"""Default hyperparameter search spaces of the model families, as plain data.

A space is a mapping from hyperparameter name to either a constant or a *leaf*, a
one-key mapping naming the distribution (book ch. 7.3.2; Hyperopt's vocabulary):

============================  ==============================================  =========
leaf                          meaning                                         value type
============================  ==============================================  =========
``{choice: [a, b, ...]}``     one of the options; options may be mappings     as given
                              (conditional sub-spaces, merged into the hp)
``{uniform: [lo, hi]}``       uniform on [lo, hi]                             float
``{quniform: [lo, hi, q]}``   ``round(uniform / q) * q``                      int if all
                                                                              ints
``{loguniform: [lo, hi]}``    log-uniform on [lo, hi] (bounds, not logs; > 0) float
``{qloguniform: [lo,hi,q]}``  quantized log-uniform                           as quniform
``{normal: [mu, sigma]}``     normal                                          float
``{randint: [lo, hi]}``       integer in [lo, hi)                             int
============================  ==============================================  =========

A nested mapping that is not a leaf is a group whose keys are merged into the
hyperparameters. The translation to Hyperopt expressions lives in
:mod:`dlpipe.tasks.sweep.space`; this module holds data only.
"""

from __future__ import annotations

_LR = {"loguniform": [1e-4, 1e-2]}
_RECURRENT = {
    "units": {"quniform": [8, 64, 8]},
    # conditional sub-space: either no dropout at all, or both rates searched
    "regularization": {
        "choice": [
            {"dropout": 0.0, "recurrent_dropout": 0.0},
            {"dropout": {"uniform": [0.05, 0.4]}, "recurrent_dropout": {"uniform": [0.05, 0.5]}},
        ]
    },
    "learning_rate": _LR,
}

TIMESERIES_SPACES: dict[str, dict] = {
    "dense": {"units": {"quniform": [16, 128, 16]}, "learning_rate": _LR},
    "gru": _RECURRENT,
    "gru_dropout": {
        "units": {"quniform": [8, 64, 8]},
        "dropout": {"uniform": [0.1, 0.4]},
        "recurrent_dropout": {"uniform": [0.1, 0.5]},
        "learning_rate": _LR,
    },
    "stacked_gru": {
        "units": {"quniform": [16, 64, 16]},
        "units_2": {"quniform": [16, 96, 16]},
        "dropout": {"uniform": [0.0, 0.3]},
        "recurrent_dropout": {"uniform": [0.0, 0.5]},
        "learning_rate": _LR,
    },
    "reversed_gru": _RECURRENT,
    "bidirectional_gru": {"units": {"quniform": [8, 64, 8]}, "learning_rate": _LR},
    "conv1d": {
        "filters": {"quniform": [16, 64, 16]},
        "kernel_size": {"choice": [3, 5, 7]},
        "pool_size": {"choice": [2, 3]},
        "learning_rate": _LR,
    },
    "conv_gru": {
        "filters": {"quniform": [16, 64, 16]},
        "kernel_size": {"choice": [3, 5]},
        "units": {"quniform": [16, 64, 16]},
        "dropout": {"uniform": [0.0, 0.3]},
        "recurrent_dropout": {"uniform": [0.0, 0.5]},
        "learning_rate": _LR,
    },
    "lstm": _RECURRENT,
}

_TEXT_RECURRENT = {
    "embedding_dim": {"quniform": [16, 64, 16]},
    "units": {"quniform": [16, 64, 16]},
    "learning_rate": _LR,
}

#: Text families (book ch. 3.4, 6.1-6.4). `vocab_size` and `num_classes` follow from
#: the data and are never searched; `glove_dense` keeps `embedding_dim` at the GloVe
#: file's dimension (its default, 100).
TEXT_SPACES: dict[str, dict] = {
    "multihot_dense": {"units": {"quniform": [8, 64, 8]}, "learning_rate": _LR},
    "embedding_flatten": {"embedding_dim": {"quniform": [8, 64, 8]}, "learning_rate": _LR},
    "glove_dense": {
        "units": {"quniform": [16, 128, 16]},
        "trainable_embedding": {"choice": [False, True]},
        "learning_rate": _LR,
    },
    "simple_rnn": _TEXT_RECURRENT,
    "lstm": _TEXT_RECURRENT,
    "bidirectional_lstm": _TEXT_RECURRENT,
    "conv1d": {
        "embedding_dim": {"quniform": [32, 128, 32]},
        "filters": {"quniform": [16, 64, 16]},
        "kernel_size": {"choice": [3, 5, 7]},
        "pool_size": {"choice": [2, 3, 5]},
        "learning_rate": {"loguniform": [3e-5, 3e-3]},
    },
}

#: Image families (book ch. 5, 7.3.1). `num_classes`, the conv base and its `weights`
#: follow from the study and are never searched; learning rates stay in the book's
#: low range (1e-4 from scratch, 2e-5 on a pretrained base).
IMAGE_SPACES: dict[str, dict] = {
    "small_convnet": {
        "filters": {"choice": [16, 32, 64]},
        "units": {"quniform": [128, 512, 128]},
        # conditional sub-space: no Dropout layer, or a searched rate
        "regularization": {"choice": [{"dropout": 0.0}, {"dropout": {"uniform": [0.2, 0.6]}}]},
        "batch_norm": {"choice": [False, True]},
        "separable": {"choice": [False, True]},
        "learning_rate": {"loguniform": [3e-5, 1e-3]},
    },
    "small_convnet_dropout": {
        "filters": {"choice": [16, 32, 64]},
        "units": {"quniform": [128, 512, 128]},
        "dropout": {"uniform": [0.3, 0.6]},
        "learning_rate": {"loguniform": [3e-5, 1e-3]},
    },
    "features_head": {
        "units": {"quniform": [64, 512, 64]},
        "dropout": {"uniform": [0.2, 0.6]},
        "learning_rate": {"loguniform": [1e-5, 1e-3]},
    },
    "frozen_base": {
        "units": {"quniform": [128, 512, 128]},
        "dropout": {"uniform": [0.0, 0.5]},
        "learning_rate": {"loguniform": [1e-5, 1e-4]},
    },
}


#: Tabular families (book ch. 3.5-3.6, 4.4). `task` and `num_classes` follow from the
#: data and are never searched.
TABULAR_SPACES: dict[str, dict] = {
    "dense": {"units": {"choice": [16, 32, 64, 128]}, "learning_rate": _LR},
    "dense_dropout": {
        "units": {"choice": [32, 64, 128]},
        "dropout": {"uniform": [0.1, 0.5]},
        "learning_rate": _LR,
    },
    "dense_l2": {
        "units": {"choice": [32, 64, 128]},
        "l2": {"loguniform": [1e-5, 1e-2]},
        "learning_rate": _LR,
    },
}


def get_spaces(pipeline: str) -> dict[str, dict]:
    """Default search space per family of ``pipeline``.

    Raises:
        ValueError: unknown pipeline.
    """
    tables = {
        "timeseries": TIMESERIES_SPACES,
        "text": TEXT_SPACES,
        "images": IMAGE_SPACES,
        "tabular": TABULAR_SPACES,
    }
    if pipeline not in tables:
        raise ValueError(f"`pipeline` must be one of {sorted(tables)}. Received: {pipeline!r}")
    return tables[pipeline]
