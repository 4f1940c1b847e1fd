"""The paper's CIFAR and ImageNet settings (de Jorge et al., ICLR 2021).

Pick the experiment with the config argument, DATASET,MODEL:

    python -m force_jax.train --config=configs/paper.py:cifar10,vgg19 --workdir=runs/c10_vgg19
    python -m force_jax.train --config=configs/paper.py:cifar10,resnet50 --workdir=runs/c10_r50
    python -m force_jax.train --config=configs/paper.py:cifar100,vgg19 --workdir=runs/c100_vgg19
    python -m force_jax.train --config=configs/paper.py:cifar100,resnet50 --workdir=runs/c100_r50
    python -m force_jax.train --config=configs/paper.py:imagenet2012,resnet50 \
        --workdir=runs/in_r50 --config.data.data_dir=$TFDS_DATA_DIR

and the sparsity / method / batches with overrides, e.g.
`--config.prune.sparsity=0.995 --config.prune.batches_per_step=10`.

CIFAR: FORCE, T = 60 exp steps, 1 batch of 128 per step (the paper also uses
10), SGD momentum 0.9, weight decay 5e-4, lr 0.1 x0.1 at epochs 150 and 250 of
350, 10 % of train held out for validation, random crop + flip. The paper
reports e.g. about 90 % test accuracy for VGG19 / CIFAR-10 at 99.5 % sparsity
with FORCE (its Fig. 2); CIFAR is not prepared on this machine, so these runs
were not reproduced here.
ImageNet: ResNet-50, 40 batches of 256 per step, weight decay 1e-4, 90 epochs,
lr 0.1 x0.1 at epochs 30, 60 and 80. The pruning pool holds 10,240 images in
memory (about 6 GB as float32).
"""

import ml_collections

from configs import default

_MODELS = {("cifar", "vgg19"): "vgg19", ("cifar", "resnet50"): "resnet50",
           ("imagenet2012", "resnet50"): "resnet50_imagenet"}


def _default_config() -> ml_collections.ConfigDict:
    return default.get_config()


def get_config(arg: str = "cifar10,vgg19") -> ml_collections.ConfigDict:
    """The paper's config for "DATASET,MODEL" (cifar10|cifar100|imagenet2012, vgg19|resnet50)."""
    dataset, model = arg.split(",")
    family = "imagenet2012" if dataset == "imagenet2012" else "cifar"
    if dataset not in ("cifar10", "cifar100", "imagenet2012") or (family, model) not in _MODELS:
        raise ValueError(f"no paper config for {arg!r}; see the docstring of configs/paper.py")
    config = _default_config()
    config.data.name = dataset
    config.model.name = _MODELS[family, model]
    config.prune.method = "force"
    config.prune.sparsity = 0.99
    config.prune.steps = 60
    config.prune.schedule = "exp"
    config.prune.scoring_loss = "nll_on_logits"  # the official code: nll_loss on raw logits
    config.prune.batch_size = 128
    config.prune.batches_per_step = 1
    config.prune.pool_size = 45_000
    config.train.batch_size = 128
    config.train.momentum = 0.9
    config.train.weight_decay = 5e-4
    config.train.num_epochs = 350
    config.train.lr_schedule.name = "step"
    config.train.lr_schedule.base_lr = 0.1
    config.train.lr_schedule.boundaries = (150, 250)
    config.train.lr_schedule.factor = 0.1
    config.eval_batch_size = 1000
    if family == "imagenet2012":
        config.data.validation_fraction = 0.0
        config.prune.batch_size = 256
        config.prune.batches_per_step = 40
        # The paper's code draws a fresh augmented batch for each of the 40 x 60 pruning
        # batches; no host holds them at once, so they are streamed (each process its slice).
        config.prune.pool_size = 0
        config.prune.augment = True
        config.train.batch_size = 256
        config.train.weight_decay = 1e-4
        config.train.num_epochs = 90
        config.train.lr_schedule.boundaries = (30, 60, 80)
        config.eval_batch_size = 500
    return config
