"""The images a model sees: their shape, normalisation, augmentation and crops.

Pixels are scaled to [0, 1] and normalised per channel by the training
split's mean and std (NORMALISATION). Augmentation, from each example's own
seed so that a resumed run draws the same: the paper's pad-by-1/8 random
crop (and a flip for colour images) for fixed-size datasets, and the random
resized crop and flip of ImageNet; evaluation resizes and centre-crops
variable-size images to CROP_SIZE.
"""

from __future__ import annotations

import types

import tensorflow as tf

# Per-channel (mean, std) of the training pixels scaled to [0, 1].
NORMALISATION = types.MappingProxyType({
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
})
CROP_SIZE = 224  # Output side for variable-size images.
RESIZE_SIZE = 256  # Short side before the evaluation centre crop.


def image_layout(builder):
    """Returns (output image shape, whether source images vary in size, (mean, std))."""
    height, width, channels = builder.info.features["image"].shape
    stats = NORMALISATION.get(builder.name, ((0.5,) * channels, (0.5,) * channels))
    if height is None or width is None:
        return (CROP_SIZE, CROP_SIZE, channels), True, stats
    return (height, width, channels), False, stats


def _pad_and_crop(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    pad = image.shape[0] // 8
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])  # Zero = black, before normalising.
    return tf.image.stateless_random_crop(padded, image.shape, seed=seed)


def _random_resized_crop(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    return tf.image.resize(tf.slice(image, begin, size), (CROP_SIZE, CROP_SIZE))


def _resize_centre_crop(image: tf.Tensor) -> tf.Tensor:
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    new_hw = tf.cast(tf.round(hw * RESIZE_SIZE / tf.reduce_min(hw)), tf.int32)
    image = tf.image.resize(image, tf.maximum(new_hw, CROP_SIZE))
    top, left = tf.unstack((tf.shape(image)[:2] - CROP_SIZE) // 2)
    return tf.image.crop_to_bounding_box(image, top, left, CROP_SIZE, CROP_SIZE)


def preprocess(ds: tf.data.Dataset, builder, augment: bool) -> tf.data.Dataset:
    """Decodes, augments (from each example's "seed") and normalises; labels become int32."""
    shape, variable_size, (mean, std) = image_layout(builder)
    decode = builder.info.features["image"].decode_example

    def preprocess(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        image = tf.image.convert_image_dtype(decode(example["image"]), tf.float32)
        if augment:
            crop_seed, flip_seed = tf.unstack(
                tf.random.experimental.stateless_split(example["seed"], 2))
            crop = _random_resized_crop if variable_size else _pad_and_crop
            image = crop(image, crop_seed)
            if variable_size or shape[2] == 3:
                image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        elif variable_size:
            image = _resize_centre_crop(image)
        image = tf.ensure_shape((image - tf.constant(mean)) / tf.constant(std), shape)
        return {"image": image, "label": tf.cast(example["label"], tf.int32)}

    return ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
