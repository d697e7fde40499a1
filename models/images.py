"""Image classification model families (Deep Learning with Python, ch. 5 and 7.3.1).

Every builder maps a batch of images of shape `(height, width, channels)` (or, for
`build_features_head`, a batch of cached conv-base features such as `(4, 4, 512)`) to
class scores:

* `num_classes=1` (default, the book's cats vs dogs): one sigmoid unit, compiled with
  `binary_crossentropy`; labels are 0/1 (class order = sorted class folder names).
* `num_classes >= 2`: a softmax over the classes, compiled with
  `sparse_categorical_crossentropy`; labels are integer class indices.

All models are compiled with RMSprop at the family's book learning rate and report
`accuracy` (the book's splits are balanced). Layers are named by their place
(`conv2d_1`, `max_pooling2d_1`, `dense_1`, `dense_out`; conv bases keep the names
Keras gives them, e.g. `block5_conv1`), so fine-tuning selects layers by name.

Augmentation (book 5.2.5) is a preprocessing block *inside* the model
(`augmentation_block`, a `keras.Sequential` named `"augmentation"` right after the
input), switched by the `augment` hyperparameter. Keras' random image layers transform
only when called with `training=True` (in `fit`), and pass images through unchanged in
`evaluate`/`predict`, so validation and test data are never augmented, and the
augmentation runs on the same device as the model (the GPU when there is one). The
data pipeline therefore feeds plain decoded, resized and rescaled images to every
family. Feature extraction on cached features (`build_features_head`) has no
augmentation, as in the book (features are computed once per image).

Pixel scaling is the data pipeline's job (`1/255` for the from-scratch convnets, the
conv base's own `preprocess_input` for `build_frozen_base`); see
`dlpipe.tasks.images.preprocess`.
"""

from __future__ import annotations

import numbers
import os

from dlpipe.models.lazy_keras import keras

#: Conv bases available by name: lower-case name -> (keras.applications constructor,
#: keras.applications module holding its `preprocess_input`).
CONV_BASES = {
    "vgg16": ("VGG16", "vgg16"),
    "vgg19": ("VGG19", "vgg19"),
    "resnet50": ("ResNet50", "resnet50"),
    "inception_v3": ("InceptionV3", "inception_v3"),
    "xception": ("Xception", "xception"),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2"),
}
_BASE_ALIASES = {"inceptionv3": "inception_v3", "mobilenetv2": "mobilenet_v2"}

#: The VGG16 layers the book unfreezes for fine-tuning (book 5.3.2).
BOOK_FINE_TUNE_LAYERS = ("block5_conv1", "block5_conv2", "block5_conv3")

# The small convnet's stages, in order, for its minimum input size
# (3x3 "valid" convolutions and 2x2 max pooling, four times).
_SMALL_CONVNET_STAGES = ("conv", "pool") * 4
_WEIGHTS_SUFFIXES = (".h5", ".keras")


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights could not be obtained (no network, or the download failed).

    The message says to pass the path of a local weights file instead.
    """


def augmentation_block(
    *,
    rotation=40 / 360,
    translation=0.2,
    zoom=0.2,
    shear=0.0,
    horizontal_flip=True,
    seed=None,
    name="augmentation",
) -> keras.Sequential:
    """The book's data augmentation as Keras preprocessing layers (book 5.2.5).

    `ImageDataGenerator(rotation_range=40, width_shift_range=0.2,
    height_shift_range=0.2, shear_range=0.2, zoom_range=0.2, horizontal_flip=True,
    fill_mode="nearest")` becomes, in this order:

    * `RandomRotation(40 / 360)`: the factor is a fraction of a full turn, so up to
      +-40 degrees;
    * `RandomTranslation(0.2, 0.2)`: up to 20% of the height and of the width;
    * `RandomZoom(0.2, 0.2)`: height and width zoomed independently by up to 20% in
      or out, as `zoom_range=0.2` does (`[0.8, 1.2]` per axis);
    * `RandomShear(shear, shear)` only if `shear > 0` (see below);
    * `RandomFlip("horizontal")`;

    all with `fill_mode="nearest"` and bilinear interpolation (the generator's
    order-1 spline). Shear: `ImageDataGenerator` reads `shear_range` in *degrees*
    (`apply_affine_transform` calls `np.deg2rad`), so the book's `0.2` is a shear of
    at most 0.2 degrees (a 0.35% slant), which no preprocessing layer reproduces
    meaningfully; it is left out by default. `shear=0.2` adds `keras.layers.RandomShear`,
    whose factor is a fraction of the image (20%): a far stronger transformation than
    the book's.

    The layers transform only when called with `training=True`; with
    `training=False` (evaluate, predict, validation/test pipelines) the images pass
    through unchanged.

    Args:
        rotation: Largest rotation, as a fraction of a full turn (in [0, 1)).
        translation: Largest shift, as a fraction of height and width.
        zoom: Largest zoom in or out per axis, as a fraction.
        shear: Largest shear as a fraction of the image (0 = no shear layer).
        horizontal_flip: Whether to flip left-right at random.
        seed: Integer seed; each layer gets `seed + i` so they draw independently.
            `None` uses Keras' global seed (`keras.utils.set_random_seed`).
        name: Name of the returned block.

    Returns:
        A `keras.Sequential` mapping `(batch, height, width, channels)` float images to
        the same shape.

    Raises:
        ValueError: If a factor is negative, or `seed` is not an int or None.
    """
    for key, value in (
        ("rotation", rotation),
        ("translation", translation),
        ("zoom", zoom),
        ("shear", shear),
    ):
        if not isinstance(value, numbers.Real) or value < 0:
            raise ValueError(f"`{key}` must be a number >= 0. Received: {key}={value!r}")
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)):
        raise ValueError(f"`seed` must be an integer or None. Received: seed={seed!r}")

    def layer_seed(i):
        return None if seed is None else int(seed) + i

    layers = []
    if rotation:
        layers.append(
            keras.layers.RandomRotation(
                float(rotation), fill_mode="nearest", seed=layer_seed(0), name="random_rotation"
            )
        )
    if translation:
        layers.append(
            keras.layers.RandomTranslation(
                float(translation),
                float(translation),
                fill_mode="nearest",
                seed=layer_seed(1),
                name="random_translation",
            )
        )
    if zoom:
        layers.append(
            keras.layers.RandomZoom(
                float(zoom),
                float(zoom),
                fill_mode="nearest",
                seed=layer_seed(2),
                name="random_zoom",
            )
        )
    if shear:
        layers.append(
            keras.layers.RandomShear(
                float(shear),
                float(shear),
                fill_mode="nearest",
                seed=layer_seed(3),
                name="random_shear",
            )
        )
    if horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=layer_seed(4), name="random_flip"))
    return keras.Sequential(layers, name=name)


def build_small_convnet(
    input_shape,
    *,
    filters=32,
    units=512,
    dropout=0.0,
    batch_norm=False,
    separable=False,
    augment=False,
    num_classes=1,
    learning_rate=1e-4,
) -> keras.Model:
    """Small convnet trained from scratch: 4 x (Conv2D 3x3 relu, MaxPool 2x2), Flatten,
    Dense relu, classifier (book 5.2.3; ch. 7.3.1 variants as hyperparameters).

    With the defaults at `(150, 150, 3)` this is the book's model: Conv2D 32, 64, 128,
    128 filters, Dense 512, Dense 1 sigmoid: 3,453,121 parameters. The convolution
    widths are `(filters, 2 * filters, 4 * filters, 4 * filters)`.

    Args:
        input_shape: `(height, width, channels)`, positive ints; height and width at
            least 46 (the four conv/pool stages need it).
        filters: Filters of the first Conv2D (later ones: x2, x4, x4).
        units: Width of the hidden Dense layer.
        dropout: Fraction dropped by a Dropout layer before the hidden Dense layer,
            in [0, 1); 0 = no Dropout layer (book 5.2.5 uses 0.5).
        batch_norm: Add BatchNormalization after each Conv2D and after the hidden
            Dense layer (book 7.3.1).
        separable: Use SeparableConv2D (depthwise separable convolutions, book 7.3.1)
            instead of Conv2D.
        augment: Put `augmentation_block()` right after the input (active only in
            training).
        num_classes: 1 = binary (sigmoid), >= 2 = softmax over the classes.
        learning_rate: RMSprop step size (book: 1e-4).

    Returns:
        A compiled Functional model mapping `(batch, height, width, channels)` to
        `(batch, num_classes)`.

    Raises:
        ValueError: If `input_shape` is not three positive ints, the image is smaller
            than 46x46, `dropout` is outside [0, 1) or `num_classes < 1`.
    """
    return _small_convnet(
        input_shape,
        filters=filters,
        units=units,
        dropout=dropout,
        batch_norm=batch_norm,
        separable=separable,
        augment=augment,
        num_classes=num_classes,
        learning_rate=learning_rate,
        name="small_convnet",
    )


def _small_convnet(
    input_shape,
    *,
    filters,
    units,
    dropout,
    batch_norm,
    separable,
    augment,
    num_classes,
    learning_rate,
    name,
) -> keras.Model:
    """The layers of `build_small_convnet` and `build_small_convnet_dropout`."""
    shape = _check_image_shape(input_shape)
    needed = _min_size(_SMALL_CONVNET_STAGES)
    if min(shape[:2]) < needed:
        raise ValueError(
            f"The height and width of family `{name}` must be at least {needed} "
            f"for its four conv/pool stages. Received: input_shape={shape}"
        )
    _check_rate(dropout, "dropout")
    inputs = keras.Input(shape=shape, name="image")
    x = augmentation_block()(inputs) if augment else inputs
    conv = keras.layers.SeparableConv2D if separable else keras.layers.Conv2D
    prefix = "separable_conv2d" if separable else "conv2d"
    for i, width in enumerate((filters, 2 * filters, 4 * filters, 4 * filters), start=1):
        x = conv(width, 3, activation="relu", name=f"{prefix}_{i}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"batch_normalization_{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"max_pooling2d_{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)  # (batch, h' * w' * 4 * filters)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(units, activation="relu", name="dense_1")(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(name="batch_normalization_dense")(x)
    return _head_and_compile(
        inputs, x, name=name, num_classes=num_classes, learning_rate=learning_rate
    )


def build_small_convnet_dropout(
    input_shape,
    *,
    filters=32,
    units=512,
    dropout=0.5,
    batch_norm=False,
    separable=False,
    augment=True,
    num_classes=1,
    learning_rate=1e-4,
) -> keras.Model:
    """Small convnet with Dropout 0.5 before the Dense layer and data augmentation
    (book 5.2.5).

    The same layers as `build_small_convnet`; the defaults turn on Dropout(0.5) and
    the in-model augmentation block (active only in training).

    Args:
        input_shape: `(height, width, channels)`, positive ints, height and width >= 46.
        filters: Filters of the first Conv2D (later ones: x2, x4, x4).
        units: Width of the hidden Dense layer.
        dropout: Fraction dropped before the hidden Dense layer, in [0, 1).
        batch_norm: Add BatchNormalization after each Conv2D and the hidden Dense.
        separable: Use SeparableConv2D instead of Conv2D.
        augment: Put `augmentation_block()` right after the input.
        num_classes: 1 = binary (sigmoid), >= 2 = softmax over the classes.
        learning_rate: RMSprop step size (book: 1e-4).

    Returns:
        A compiled Functional model mapping `(batch, height, width, channels)` to
        `(batch, num_classes)`.

    Raises:
        ValueError: As `build_small_convnet`.
    """
    return _small_convnet(
        input_shape,
        filters=filters,
        units=units,
        dropout=dropout,
        batch_norm=batch_norm,
        separable=separable,
        augment=augment,
        num_classes=num_classes,
        learning_rate=learning_rate,
        name="small_convnet_dropout",
    )


def build_features_head(
    input_shape, *, units=256, dropout=0.5, num_classes=1, learning_rate=2e-5
) -> keras.Model:
    """Classifier head trained on cached conv-base features: Flatten, Dense relu,
    Dropout, classifier (book 5.3.1, fast feature extraction without augmentation).

    With VGG16 at 150x150 the features are `(4, 4, 512)`, flattened to 8,192 values.

    Args:
        input_shape: Shape of one cached feature array, e.g. `(4, 4, 512)`; positive
            ints, any rank >= 1.
        units: Width of the hidden Dense layer (book: 256).
        dropout: Fraction dropped after the hidden Dense layer, in [0, 1).
        num_classes: 1 = binary (sigmoid), >= 2 = softmax over the classes.
        learning_rate: RMSprop step size (book: 2e-5).

    Returns:
        A compiled Functional model mapping `(batch, *input_shape)` to
        `(batch, num_classes)`.

    Raises:
        ValueError: If `input_shape` is not a tuple of positive ints, `dropout` is
            outside [0, 1) or `num_classes < 1`.
    """
    if (
        not isinstance(input_shape, (tuple, list))
        or not input_shape
        or not all(_is_positive_int(d) for d in input_shape)
    ):
        raise ValueError(
            "`input_shape` must be a tuple of positive integers (the shape of one "
            f"feature array, e.g. (4, 4, 512)). Received: input_shape={input_shape!r}"
        )
    _check_rate(dropout, "dropout")
    inputs = keras.Input(shape=tuple(int(d) for d in input_shape), name="features")
    x = keras.layers.Flatten(name="flatten")(inputs)  # (batch, prod(input_shape))
    x = keras.layers.Dense(units, activation="relu", name="dense_1")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return _head_and_compile(
        inputs, x, name="features_head", num_classes=num_classes, learning_rate=learning_rate
    )


def build_frozen_base(
    input_shape,
    *,
    base="vgg16",
    weights="imagenet",
    units=256,
    dropout=0.0,
    augment=True,
    num_classes=1,
    learning_rate=2e-5,
) -> keras.Model:
    """Frozen pretrained conv base inside the model, Flatten, Dense relu, classifier:
    feature extraction end to end with augmentation (book 5.3.1, second technique).

    The conv base (`conv_base(base, ...)`, `include_top=False`) is a nested model
    named by Keras (e.g. `"vgg16"`) with `trainable=False`, called with
    `training=False` so its BatchNormalization layers (ResNet50, Xception...) stay in
    inference mode even after fine-tuning. Inputs must already be preprocessed with
    the base's own `preprocess_input` (the data pipeline does it). Step two of the
    book's schedule is `fine_tune(model)` once the head is trained.

    Args:
        input_shape: `(height, width, 3)`, positive ints, within the base's limits
            (VGG16: at least 32x32).
        base: Conv base name, one of `CONV_BASES` (case-insensitive).
        weights: `"imagenet"`, `"none"` (random initialization) or the path of a
            local `.h5` / `.keras` weights file (see `conv_base`).
        units: Width of the hidden Dense layer (book: 256).
        dropout: Fraction dropped after the hidden Dense layer, in [0, 1)
            (book: none in this model).
        augment: Put `augmentation_block()` before the conv base (active only in
            training).
        num_classes: 1 = binary (sigmoid), >= 2 = softmax over the classes.
        learning_rate: RMSprop step size (book: 2e-5).

    Returns:
        A compiled Functional model mapping `(batch, height, width, 3)` to
        `(batch, num_classes)`.

    Raises:
        ValueError: Bad `input_shape`, `base`, `weights` path, `dropout` or
            `num_classes`.
        WeightsUnavailableError: `weights="imagenet"` and the download failed.
    """
    shape = _check_image_shape(input_shape)
    _check_rate(dropout, "dropout")
    base_model = conv_base(base, weights=None if weights == "none" else weights, input_shape=shape)
    base_model.trainable = False
    inputs = keras.Input(shape=shape, name="image")
    x = augmentation_block()(inputs) if augment else inputs
    x = base_model(x, training=False)  # (batch, h', w', channels'), e.g. (4, 4, 512)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(units, activation="relu", name="dense_1")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return _head_and_compile(
        inputs, x, name="frozen_base", num_classes=num_classes, learning_rate=learning_rate
    )


def fine_tune(
    model: keras.Model, unfreeze=BOOK_FINE_TUNE_LAYERS, learning_rate=1e-5
) -> keras.Model:
    """Unfreeze exactly the named layers of a conv base and recompile (book 5.3.2).

    Layers are selected by name, never by index. In the conv base (any nested model
    of `model` that holds one of the names, e.g. the `"vgg16"` inside
    `build_frozen_base`), each layer becomes trainable if and only if it is named:
    everything below stays frozen, and so do unnamed layers above (e.g.
    `block5_pool`, which has no weights). Layers outside the conv base (the
    classifier head) keep their state. If the names are layers of `model` itself
    (a flat model), every layer up to the last named one becomes trainable iff it
    is named, and later layers keep their state.

    The model is recompiled (RMSprop at `learning_rate`, the same loss and metrics
    as the builders) because `trainable` changes take effect only at compile time.

    Args:
        model: A model built by `build_frozen_base` (or any model holding the named
            layers), whose head has already been trained.
        unfreeze: Names of the layers to make trainable (book:
            `block5_conv1`, `block5_conv2`, `block5_conv3`).
        learning_rate: RMSprop step size (book: 1e-5, to limit the changes to the
            pretrained representations).

    Returns:
        `model`, modified in place and recompiled.

    Raises:
        ValueError: If `unfreeze` is empty or a string, or names a layer `model` does
            not have (the message lists the conv base's layer names).
    """
    if isinstance(unfreeze, str) or not unfreeze:
        raise ValueError(
            "`unfreeze` must be a non-empty list of layer names, e.g. "
            f"{list(BOOK_FINE_TUNE_LAYERS)}. Received: unfreeze={unfreeze!r}"
        )
    wanted = set(unfreeze)
    containers = [model] + [
        layer for layer in _walk_layers(model) if isinstance(layer, keras.Model)
    ]
    plan = []  # (container, the named layers it holds); checked before any change
    for container in containers:
        here = wanted & {layer.name for layer in container.layers}
        if here:
            plan.append((container, here))
    missing = sorted(wanted - set().union(*(here for _, here in plan)))
    if missing:
        known = [
            layer.name
            for layer in _walk_layers(model)
            if layer.weights and not isinstance(layer, keras.Model)
        ]
        raise ValueError(
            f"`unfreeze` names layer(s) {missing} that model `{model.name}` does not "
            f"have. Layers with weights: {known}. Received: unfreeze={list(unfreeze)!r}"
        )
    for container, here in plan:
        if container is model:
            names = [layer.name for layer in container.layers]
            targets = container.layers[: max(names.index(n) for n in here) + 1]
        else:
            container.trainable = True  # sets every sublayer; then pick exactly
            targets = container.layers
        for layer in targets:
            layer.trainable = layer.name in wanted
    _compile(model, num_classes=int(model.output_shape[-1]), learning_rate=learning_rate)
    return model


def conv_base(name, *, weights="imagenet", input_shape=(150, 150, 3)) -> keras.Model:
    """A pretrained convolutional base from `keras.applications`, without its
    classifier (`include_top=False`, book 5.3.1).

    Args:
        name: One of `CONV_BASES`: `"vgg16"`, `"vgg19"`, `"resnet50"`,
            `"inception_v3"`, `"xception"`, `"mobilenet_v2"` (case-insensitive;
            `"InceptionV3"`, `"MobileNetV2"` accepted).
        weights: `"imagenet"` (downloaded by Keras into `~/.keras/models` when the
            network allows, reused from there afterwards), `None` (random
            initialization), or the path of a local weights file (`.h5`, e.g. the
            `..._notop.h5` file Keras downloads, or `.keras`).
        input_shape: `(height, width, 3)` within the base's limits (Keras raises
            for too small inputs: 32x32 for VGG16/VGG19/ResNet50/MobileNetV2, 75x75
            for InceptionV3, 71x71 for Xception).

    Returns:
        The Functional conv base, mapping `(batch, height, width, 3)` preprocessed
        images (see `preprocess_input_fn`) to feature maps, e.g. `(batch, 4, 4, 512)`
        for VGG16 at 150x150. Its layers keep Keras' names (`block5_conv1`...).

    Raises:
        ValueError: Unknown `name`, a `weights` path that does not exist or is not a
            `.h5`/`.keras` file (the message names the path), or an input shape the
            base does not accept.
        WeightsUnavailableError: `weights="imagenet"` and the download failed; pass
            the path of a local weights file instead.
    """
    key = conv_base_name(name)
    constructor = getattr(keras.applications, CONV_BASES[key][0])
    shape = _check_image_shape(input_shape)
    if weights == "imagenet" or weights is None:
        resolved = weights
    elif isinstance(weights, (str, os.PathLike)):
        resolved = os.fspath(weights)
        if not os.path.isfile(resolved):
            raise ValueError(
                "`weights` must be 'imagenet', None, or the path of an existing local "
                f"weights file. No such file: {resolved!r}. Received: weights={weights!r}"
            )
        if not resolved.endswith(_WEIGHTS_SUFFIXES):
            raise ValueError(
                f"`weights` file must end with '.h5' or '.keras'. Received: weights={weights!r}"
            )
    else:
        raise ValueError(
            "`weights` must be 'imagenet', None, or the path of a local .h5/.keras "
            f"weights file. Received: weights={weights!r}"
        )
    try:
        return constructor(include_top=False, weights=resolved, input_shape=shape)
    except ValueError:
        raise
    except Exception as exc:  # keras.utils.get_file raises a bare Exception offline
        if resolved != "imagenet":
            raise
        raise WeightsUnavailableError(
            f"Could not obtain the ImageNet weights of conv base `{key}` ({exc}). "
            "Download them where the network allows (they are cached in "
            "~/.keras/models), then pass the path of the local weights file as "
            "`weights`, e.g. weights='/data/vgg16_weights_tf_dim_ordering_tf_kernels_"
            "notop.h5'."
        ) from exc


def preprocess_input_fn(name):
    """The `preprocess_input` function of conv base `name` (e.g. caffe-style BGR mean
    subtraction for VGG16, scaling to [-1, 1] for MobileNetV2 and Xception).

    It takes float images with values in [0, 255], shape `(..., height, width, 3)`.

    Raises:
        ValueError: Unknown `name` (the message lists `CONV_BASES`).
    """
    module = getattr(keras.applications, CONV_BASES[conv_base_name(name)][1])
    return module.preprocess_input


def conv_base_name(name) -> str:
    """The canonical key of conv base `name` in `CONV_BASES`.

    Case-insensitive, with the aliases `inceptionv3` and `mobilenetv2`; used by
    `conv_base`, `preprocess_input_fn` and the data pipeline's preprocessing id
    (`dlpipe.tasks.images.preprocess.preprocessing_id`).

    Args:
        name: A conv base name, e.g. `"VGG16"`.

    Returns:
        The key, e.g. `"vgg16"`.

    Raises:
        ValueError: Unknown `name` (the message lists `CONV_BASES`).
    """
    key = str(name).lower() if isinstance(name, str) else name
    key = _BASE_ALIASES.get(key, key)
    if key not in CONV_BASES:
        raise ValueError(f"`base` must be one of {sorted(CONV_BASES)}. Received: base={name!r}")
    return key


def _walk_layers(model):
    """Yield every layer of `model`, nested models' layers included (depth first)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _walk_layers(layer)


def _head_and_compile(inputs, features, *, name, num_classes, learning_rate) -> keras.Model:
    """Add the classifier layer (`dense_out`) and compile."""
    if not _is_positive_int(num_classes):
        raise ValueError(
            "`num_classes` must be a positive integer (1 = binary sigmoid output). "
            f"Received: num_classes={num_classes!r}"
        )
    if num_classes == 1:
        outputs = keras.layers.Dense(1, activation="sigmoid", name="dense_out")(features)
    else:
        outputs = keras.layers.Dense(num_classes, activation="softmax", name="dense_out")(features)
    model = keras.Model(inputs, outputs, name=name)  # (batch, num_classes)
    return _compile(model, num_classes=int(num_classes), learning_rate=learning_rate)


def _compile(model, *, num_classes, learning_rate) -> keras.Model:
    loss = "binary_crossentropy" if num_classes == 1 else "sparse_categorical_crossentropy"
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate),
        loss=loss,
        metrics=["accuracy"],
    )
    return model


def _is_positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _check_image_shape(input_shape) -> tuple[int, int, int]:
    """Return `input_shape` as `(height, width, channels)` or raise ValueError."""
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(_is_positive_int(d) for d in input_shape)
    ):
        raise ValueError(
            "`input_shape` must be a tuple of three positive integers "
            f"(height, width, channels). Received: input_shape={input_shape!r}"
        )
    return int(input_shape[0]), int(input_shape[1]), int(input_shape[2])


def _check_rate(value, key: str) -> None:
    if not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"`{key}` must be in [0, 1). Received: {key}={value!r}")


def _min_size(stages) -> int:
    """Fewest pixels per side for which every stage leaves at least 1 pixel.

    Walks back from 1: a 3x3 "valid" convolution needs 2 more pixels than it outputs;
    a 2x2 max pooling (stride 2) needs twice its output.
    """
    needed = 1
    for stage in reversed(stages):
        needed = needed + 2 if stage == "conv" else needed * 2
    return needed
