"""Every registry entry of every factor, on 1-D signals and 2-D images."""

import math

import pytest
import torch
import torch.nn.functional as F

from whatmatters.factors import FACTORS
from whatmatters.factors.optimizer import Lion
from whatmatters.registry import Registry
from whatmatters.errors import StudyError

SHAPES = {"signal": (1, 40), "image": (1, 8, 8), "rgb": (3, 32, 32)}


def build(factor, kind, *args, **settings):
    registry = FACTORS[factor]
    return registry.build(kind, registry.resolve("test", kind, settings), *args)


def params_for(factor, kind):
    """Settings a kind requires (only the optimizer's lr has no default)."""
    return {"lr": 0.01} if factor == "optimizer" else {}


def test_registries_cover_required_levels():
    required = {
        "init": {"default", "he", "xavier", "lecun", "orthogonal", "normal"},
        "optimizer": {"sgd", "nesterov", "adam", "adamw", "rmsprop", "lion", "signsgd"},
        "architecture": {"linear", "mlp", "cnn", "gru", "resnet", "transformer"},
        "loss": {"cross_entropy", "brier", "label_smoothing", "focal"},
        "augmentation": {"none", "shift", "flip", "crop_flip", "noise", "mixup", "cutmix", "cutout"},
        "schedule": {"constant", "step", "cosine", "warmup_cosine", "onecycle"},
        "regularization": {"none", "weight_decay", "dropout", "both"},
    }
    for factor, kinds in required.items():
        assert kinds <= set(FACTORS[factor].kinds()), factor


# ---- architecture -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES)
@pytest.mark.parametrize("kind", FACTORS["architecture"].kinds())
def test_architecture_maps_inputs_to_logits(kind, shape):
    model = build("architecture", kind, shape, 7, 0.0)
    x = torch.randn(5, *shape)
    out = model(x)
    assert out.shape == (5, 7)
    out.sum().backward()  # trainable end to end
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("kind", FACTORS["architecture"].kinds())
def test_architecture_takes_dropout_from_regularization(kind):
    """Every dropout is the trainer-masked kind (so stacked seeds keep their own masks)."""
    from whatmatters.factors.architecture import Dropout

    model = build("architecture", kind, (1, 8, 8), 10, 0.3)
    rates = [m.p for m in model.modules() if isinstance(m, Dropout)]
    assert rates and all(p == 0.3 for p in rates)
    assert not any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
    assert all(m.dropout == 0 for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention))


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_width_and_depth_change_the_network():
    small = build("architecture", "mlp", (1, 40), 10, 0.0, width=16, depth=1)
    big = build("architecture", "mlp", (1, 40), 10, 0.0, width=64, depth=3)
    assert count(small) == 40 * 16 + 16 + 16 * 10 + 10
    assert count(big) > 4 * count(small)


def test_linear_is_logistic_regression_on_the_flattened_input():
    model = build("architecture", "linear", (1, 8, 8), 10, 0.0)
    assert [type(m).__name__ for m in model] == ["Flatten", "Dropout", "Linear"]
    assert count(model) == 64 * 10 + 10


def test_cnn_defaults_are_the_cnn_as_it_was():
    """Batch norm, max-pooling, doubling channels and a global-average-pool head: the same
    layers in the same order (so the same init draws) as before the settings existed."""
    model = build("architecture", "cnn", (1, 8, 8), 10, 0.0, width=16, depth=3)
    assert [type(m).__name__ for m in model] == [
        "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d",
        "Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Flatten", "Dropout", "Linear"]
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64] and all(c.bias is None and c.stride == (1, 1) for c in convs)
    assert count(model) == (9 * 16 + 16 * 9 * 32 + 32 * 9 * 64) + 2 * (16 + 32 + 64) + 64 * 10 + 10


def test_cnn_settings_express_the_mnist1d_papers_plain_cnn():
    """No norm (convs with biases), stride-2 convs of constant width, the flattened features
    to a linear head: on 40-long signals 40 -> 20 -> 10 -> 5 positions of 25 channels."""
    model = build("architecture", "cnn", (1, 40), 10, 0.0, width=25, depth=3, norm="none",
                  downsample="stride", head="flatten", channels="constant")
    assert [type(m).__name__ for m in model] == ["Conv1d", "ReLU"] * 3 + ["Flatten", "Dropout", "Linear"]
    assert all(m.stride == (2,) and m.bias is not None for m in model if isinstance(m, torch.nn.Conv1d))
    assert model[-1].in_features == 25 * 5
    assert count(model) == (3 * 25 + 25) + 2 * (25 * 25 * 3 + 25) + 125 * 10 + 10
    image = build("architecture", "cnn", (3, 28, 20), 10, 0.0, width=4, depth=2, norm="none",
                  downsample="stride", head="flatten")   # non-square: each side halves on its own
    assert image[-1].in_features == 8 * 7 * 5 and image(torch.randn(2, 3, 28, 20)).shape == (2, 10)


def test_cnn_settings_refuse_values_outside_their_choices():
    with pytest.raises(StudyError, match=r"test.downsample: expected one of pool, stride, got 'avg'"):
        FACTORS["architecture"].resolve("test", "cnn", {"downsample": "avg"})


def test_gru_computes_what_torch_gru_computes():
    """The step-by-step GRU (stackable under vmap) equals torch.nn.GRU with the same weights;
    at the paper's size (6 units each way, 40 steps) it has the paper's 5,134 parameters."""
    torch.manual_seed(0)
    model = build("architecture", "gru", (1, 40), 10, 0.0, width=6)
    assert count(model) == 5134
    ours = model.gru
    reference = torch.nn.GRU(1, 6, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for d, suffix in enumerate(["", "_reverse"]):
            for name, layer in (("ih", ours.input[d]), ("hh", ours.recurrent[d])):
                getattr(reference, f"weight_{name}_l0{suffix}").copy_(layer.weight)
                getattr(reference, f"bias_{name}_l0{suffix}").copy_(layer.bias)
        x = torch.randn(4, 40, 1)
        torch.testing.assert_close(ours(x), reference(x)[0], rtol=1e-5, atol=1e-6)
    assert all(p.abs().max() <= 1 / math.sqrt(6) for p in ours.parameters())   # nn.GRU's default init


def test_gru_reads_an_image_as_a_sequence_of_rows():
    model = build("architecture", "gru", (3, 5, 7), 10, 0.0, width=4, bidirectional=False)
    assert model.gru.input[0].in_features == 3 * 7 and len(model.gru.input) == 1
    assert model.head[-1].in_features == 5 * 4
    x = torch.randn(2, 3, 5, 7)
    x2 = x.clone()
    x2[:, :, -1] += 1   # the last row changes only the last steps' states
    with torch.no_grad():
        states, states2 = model.gru(x.movedim(1, 2).flatten(2)), model.gru(x2.movedim(1, 2).flatten(2))
    assert torch.equal(states[:, :-1], states2[:, :-1]) and not torch.equal(states[:, -1], states2[:, -1])


@pytest.mark.parametrize("kind,settings", [("resnet", {"width": 8, "depth": 3}),
                                            ("transformer", {"dim": 48, "depth": 2, "heads": 4}),
                                            ("cnn", {"width": 16, "depth": 3})])
def test_architectures_learn_on_cifar_shaped_images(kind, settings):
    """32x32x3 images whose class is a spatial colour pattern plus heavy noise: a few
    epochs of Adam take every image architecture well above chance on held-out images
    (a smoke test of the CIFAR-scale path; real CIFAR-10 accuracy needs the data)."""
    from helpers import cheap_levels, level
    from whatmatters.train import train_run

    g = torch.Generator().manual_seed(0)
    classes, n = 4, 640
    patterns = torch.randn(classes, 3, 4, 4, generator=g).repeat_interleave(8, -1).repeat_interleave(8, -2)
    y = torch.randint(0, classes, (n,), generator=g)
    x = patterns[y] + 1.5 * torch.randn(n, 3, 32, 32, generator=g)
    data = {"x_train": x[:512], "y_train": y[:512], "x_test": x[512:], "y_test": y[512:],
            "num_classes": classes, "input_shape": (3, 32, 32)}
    levels = cheap_levels(architecture=level("architecture", kind, **settings),
                          optimizer=level("optimizer", "adam", lr=0.003),
                          schedule=level("schedule", "cosine", batch_size=64))
    r = train_run(data, levels, seed=0, epochs=4)
    assert r["status"] == "ok" and r["test_accuracy"] > 0.6, r   # chance is 0.25


def test_resnet_width_and_depth_are_separate_knobs():
    base = build("architecture", "resnet", (3, 32, 32), 10, 0.0, width=16, depth=2)
    wide = build("architecture", "resnet", (3, 32, 32), 10, 0.0, width=32, depth=2)
    deep = build("architecture", "resnet", (3, 32, 32), 10, 0.0, width=16, depth=4)
    blocks = lambda m: sum(1 for layer in m.modules() if type(layer).__name__ == "_Block")   # noqa: E731
    assert blocks(wide) == blocks(base) == 2 and blocks(deep) == 4
    assert count(wide) > 3 * count(base) and count(deep) > count(base)


# ---- init ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES)
@pytest.mark.parametrize("arch", FACTORS["architecture"].kinds())
@pytest.mark.parametrize("kind", FACTORS["init"].kinds())
def test_init_applies_to_every_architecture(kind, arch, shape):
    torch.manual_seed(0)
    model = build("architecture", arch, shape, 10, 0.0)
    build("init", kind, model, torch.Generator().manual_seed(1))
    assert torch.isfinite(model(torch.randn(2, *shape))).all()


@pytest.mark.parametrize("kind, expected_std", [
    ("he", lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
    ("lecun", lambda fan_in, fan_out: math.sqrt(1 / fan_in)),
    ("xavier", lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out))),
    ("normal", lambda fan_in, fan_out: 0.01),
    ("orthogonal", lambda fan_in, fan_out: math.sqrt(1 / fan_in)),  # rows of a 512x256 orthogonal matrix
])
def test_init_scales(kind, expected_std):
    layer = torch.nn.Linear(512, 256)
    build("init", kind, layer, torch.Generator().manual_seed(0))
    assert layer.weight.std().item() == pytest.approx(expected_std(512, 256), rel=0.05)
    assert torch.all(layer.bias == 0)


def test_init_draws_from_its_own_generator():
    def weights(seed):
        layer = torch.nn.Linear(20, 20)
        build("init", "he", layer, torch.Generator().manual_seed(seed))
        return layer.weight.detach().clone()

    assert torch.equal(weights(3), weights(3))
    assert not torch.equal(weights(3), weights(4))


# ---- optimizer ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", FACTORS["optimizer"].kinds())
def test_optimizer_reduces_a_convex_loss(kind):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(10))
    opt = build("optimizer", kind, [w], 0.0, lr=0.01)
    start = w.detach().pow(2).sum().item()
    for _ in range(50):
        opt.zero_grad()
        w.pow(2).sum().backward()
        opt.step()
    assert w.detach().pow(2).sum().item() < 0.9 * start


def test_optimizer_requires_lr():
    with pytest.raises(StudyError, match="missing required setting 'lr'"):
        FACTORS["optimizer"].resolve("factors.optimizer.levels[0] (adam)", "adam", {})


def test_lion_first_step_is_a_signed_step_of_size_lr():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = Lion([w], lr=0.1, betas=(0.9, 0.99), weight_decay=0.0)
    w.grad = torch.tensor([0.5, -4.0, 0.0])
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([0.9, -1.9, 3.0]))


def test_signsgd_steps_along_the_gradient_sign_with_decoupled_decay():
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = build("optimizer", "signsgd", [w], 0.5, lr=0.1)
    w.grad = torch.tensor([3.0, 3.0])
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([1.0 * 0.95 - 0.1, -1.0 * 0.95 - 0.1]))


# ---- loss ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", FACTORS["loss"].kinds())
def test_loss_prefers_the_right_answer(kind):
    loss = build("loss", kind)
    target = F.one_hot(torch.tensor([0, 1, 2]), 3).float()
    good = loss(10 * target, target)
    bad = loss(10 * (1 - target), target)
    assert torch.isfinite(good) and good < bad


@pytest.mark.parametrize("kind", FACTORS["loss"].kinds())
def test_loss_accepts_soft_targets(kind):
    logits = torch.randn(4, 5, requires_grad=True)
    target = torch.softmax(torch.randn(4, 5), -1)
    value = build("loss", kind)(logits, target)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(logits.grad).all()


def test_loss_values_by_hand():
    logits = torch.zeros(2, 4)  # uniform prediction
    target = F.one_hot(torch.tensor([0, 3]), 4).float()
    assert build("loss", "cross_entropy")(logits, target).item() == pytest.approx(math.log(4))
    assert build("loss", "brier")(logits, target).item() == pytest.approx(0.75**2 + 3 * 0.25**2)
    # focal with gamma = 0 is cross-entropy; with gamma = 2 it is scaled by (1 - 1/4)^2
    assert build("loss", "focal", gamma=0.0)(logits, target).item() == pytest.approx(math.log(4))
    assert build("loss", "focal", gamma=2.0)(logits, target).item() == pytest.approx(0.5625 * math.log(4))


# ---- augmentation -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [SHAPES["signal"], SHAPES["image"]], ids=["signal", "image"])
@pytest.mark.parametrize("kind", FACTORS["augmentation"].kinds())
def test_augmentation_keeps_shapes_and_is_seeded(kind, shape):
    augment = build("augmentation", kind)
    x = torch.randn(8, *shape)
    y = F.one_hot(torch.arange(8) % 10, 10).float()
    x1, y1 = augment(x, y, torch.Generator().manual_seed(5))
    x2, y2 = augment(x, y, torch.Generator().manual_seed(5))
    assert x1.shape == x.shape and y1.shape == y.shape
    assert torch.allclose(y1.sum(-1), torch.ones(8))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)  # same stream, same batch


@pytest.mark.parametrize("shape", [SHAPES["signal"], SHAPES["image"]], ids=["signal", "image"])
@pytest.mark.parametrize("kind", FACTORS["augmentation"].kinds())
def test_stacked_seeds_augment_as_one_batch_each_from_its_own_stream(kind, shape):
    """Given S generators and S batches as one (S*B rows), each seed's rows get what they get alone."""
    augment = build("augmentation", kind)
    x, y = torch.randn(3, 8, *shape), F.one_hot(torch.arange(24) % 10, 10).float().view(3, 8, 10)
    alone = [augment(x[s], y[s], torch.Generator().manual_seed(s)) for s in range(3)]
    xs, ys = augment(x.flatten(0, 1), y.flatten(0, 1), [torch.Generator().manual_seed(s) for s in range(3)])
    assert torch.equal(xs, torch.cat([a[0] for a in alone])) and torch.equal(ys, torch.cat([a[1] for a in alone]))


def test_none_is_the_identity():
    x, y = torch.randn(3, 1, 40), torch.eye(3)
    assert build("augmentation", "none")(x, y, torch.Generator()) == (x, y)


def test_shift_translates_each_sample_with_zero_fill():
    x = torch.arange(1, 11, dtype=torch.float32).repeat(64, 1, 1)  # (64, 1, 10)
    out, _ = build("augmentation", "shift", max_shift=2)(x, torch.zeros(64, 2), torch.Generator().manual_seed(0))
    shifts = set()
    for row in out[:, 0]:
        kept = row[row != 0]
        assert torch.equal(kept, torch.arange(kept[0].item(), kept[0].item() + len(kept)))  # contiguous run
        assert len(kept) >= 8
        shifts.add(int(kept[0].item()) - 1 if row[0] != 0 else -int((row == 0).nonzero()[-1]) - 1)
    assert len(shifts) > 1  # samples get different offsets


def test_mixup_mixes_inputs_and_targets_alike():
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1)
    y = F.one_hot(torch.arange(6), 6).float()
    xm, ym = build("augmentation", "mixup", alpha=1.0)(x, y, torch.Generator().manual_seed(0))
    # a mixed input equals the target-weighted average of the originals
    assert torch.allclose(xm.view(6), ym @ x.view(6), atol=1e-5)


def test_cutout_zeroes_one_box_per_sample():
    x = torch.ones(4, 1, 8, 8)
    out, _ = build("augmentation", "cutout", size=3)(x, torch.zeros(4, 2), torch.Generator().manual_seed(0))
    assert torch.all((out == 0).flatten(1).sum(1) == 9)


def test_cutmix_mixes_targets_by_the_pasted_share():
    """Sample i is constant i; after cutmix its pixels come from itself and one partner,
    and the target weights equal the pixel shares exactly (clipped boxes included)."""
    x = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 1, 8, 8).contiguous()
    y = F.one_hot(torch.arange(8), 8).float()
    xm, ym = build("augmentation", "cutmix", alpha=1.0)(x, y, torch.Generator().manual_seed(0))
    shares = torch.stack([(xm == k).flatten(1).float().mean(1) for k in range(8)], 1)   # (B, source)
    assert torch.allclose(shares, ym, atol=1e-6)
    assert (ym.diagonal() < 1).any()   # some boxes were pasted


def test_flip_mirrors_whole_samples_with_probability_p():
    x = torch.arange(5, dtype=torch.float32).expand(200, 1, 5)
    out, _ = build("augmentation", "flip", p=0.5)(x, torch.zeros(200, 2), torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).all(-1).squeeze(1)
    assert torch.all(flipped | (out == x).all(-1).squeeze(1))   # each sample: as is, or mirrored
    assert 70 < int(flipped.sum()) < 130
    assert torch.equal(build("augmentation", "flip", p=1.0)(x, None, torch.Generator())[0], x.flip(-1))


# ---- schedule -----------------------------------------------------------------------------

def lr_trace(kind, total=100, **settings):
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    sched = build("schedule", kind, opt, total, **settings)
    trace = []
    for _ in range(total):
        trace.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return trace


@pytest.mark.parametrize("kind", FACTORS["schedule"].kinds())
def test_schedule_runs_its_course(kind):
    trace = lr_trace(kind)
    assert len(trace) == 100 and max(trace) <= 1.0 + 1e-9 and min(trace) >= 0


def test_schedule_shapes():
    assert set(lr_trace("constant")) == {1.0}
    cos = lr_trace("cosine")
    assert cos[0] == 1.0 and cos[-1] < 0.01 and all(a >= b for a, b in zip(cos, cos[1:]))
    warm = lr_trace("warmup_cosine", warmup=0.1)
    assert warm[0] < 0.2 and max(warm) == pytest.approx(1.0) and warm[-1] < 0.01
    step = lr_trace("step", drops=2, gamma=0.1)
    assert sorted(set(round(v, 6) for v in step)) == [0.01, 0.1, 1.0]
    one = lr_trace("onecycle", warmup=0.3)
    assert one[0] < 0.1 and max(one) == pytest.approx(1.0, rel=0.02) and one[-1] < 0.01


def test_batch_size_is_a_setting_of_every_schedule():
    for kind in FACTORS["schedule"].kinds():
        assert FACTORS["schedule"].resolve("s", kind, {"batch_size": 32})["batch_size"] == 32


# ---- regularization -----------------------------------------------------------------------

def test_regularization_levels():
    assert build("regularization", "none") == (0.0, 0.0)
    assert build("regularization", "weight_decay", weight_decay=0.01) == (0.01, 0.0)
    assert build("regularization", "dropout", p=0.2) == (0.0, 0.2)
    assert build("regularization", "both", weight_decay=0.01, p=0.2) == (0.01, 0.2)


# ---- registry -----------------------------------------------------------------------------

def test_registry_rejects_unknown_kind_and_setting_listing_valid_choices():
    with pytest.raises(StudyError, match="valid kinds: sgd, nesterov, adam"):
        FACTORS["optimizer"].kind("adamm")
    with pytest.raises(StudyError, match="unknown setting 'betas'.*valid settings: lr, beta1, beta2, eps"):
        FACTORS["optimizer"].resolve("factors.optimizer.levels[2] (adam)", "adam", {"lr": 0.1, "betas": 1})


@pytest.mark.parametrize("value", ["0.1", True, None, float("nan"), [0.1]])
def test_registry_rejects_wrongly_typed_settings(value):
    with pytest.raises(StudyError, match=r"levels\[0\] \(adam\)\.lr: expected a finite number"):
        FACTORS["optimizer"].resolve("levels[0] (adam)", "adam", {"lr": value})


def test_registry_fills_defaults_and_coerces_ints_to_floats():
    resolved = FACTORS["optimizer"].resolve("x", "adam", {"lr": 1})
    assert resolved == {"lr": 1.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    assert isinstance(resolved["lr"], float)


def test_registry_reads_settings_from_signatures():
    r = Registry("demo")

    @r.register("k")
    def k(model, *, a: int, b: float = 0.5, c: int | None = None):
        return a, b, c

    assert r.build("k", r.resolve("x", "k", {"a": 2}), "model") == (2, 0.5, None)
