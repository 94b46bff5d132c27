"""The seven factors of training methodology, each a registry of level kinds.

FACTORS maps factor name -> Registry, in the order of the study's starting hierarchy.
"""

from whatmatters.factors.architecture import ARCHITECTURES
from whatmatters.factors.augmentation import AUGMENTATIONS
from whatmatters.factors.init import INITS
from whatmatters.factors.loss import LOSSES
from whatmatters.factors.optimizer import OPTIMIZERS
from whatmatters.factors.regularization import REGULARIZATIONS
from whatmatters.factors.schedule import SCHEDULES

FACTORS = {
    "init": INITS,
    "optimizer": OPTIMIZERS,
    "architecture": ARCHITECTURES,
    "loss": LOSSES,
    "augmentation": AUGMENTATIONS,
    "schedule": SCHEDULES,
    "regularization": REGULARIZATIONS,
}
