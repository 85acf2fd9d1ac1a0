import pytest
import torch
import torchvision

from model.errors import TeacherWeightsError
from model.loss import discrepancy_map, distillation_loss, feature_distances, imitation_penalty
from model.student import ResidualAttention, Student
from model.teacher import (
    TEACHER_WEIGHTS_ENV,
    VGG_POOL_INDEX,
    VGG_TAP_INDEX,
    Teacher,
    _vgg_features,
    fingerprint,
    resolve_teacher_weights,
    tap_indices,
)

TAPS = ["relu2_2", "relu3_3", "relu4_3"]


def built(backbone: str, taps: list[str]) -> Teacher:
    """A teacher built without torchvision's whole-network initialisation (a second less each): for
    tests that look at its shapes and modes, or load weights into it."""
    return Teacher(backbone, taps, initialise=False)


def test_teacher_taps_have_vgg_channels_and_scales():
    teacher = built("vgg16", TAPS)
    maps = teacher(torch.randn(2, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(2, 128, 32, 32), (2, 256, 16, 16), (2, 512, 8, 8)]
    assert teacher.channels == [128, 256, 512]


@pytest.mark.parametrize("backbone", ["vgg16", "vgg19"])
def test_teacher_layers_are_torchvisions_so_its_weights_load(backbone):
    mine, theirs = _vgg_features(backbone, initialise=False), getattr(torchvision.models, backbone)(weights=None).features
    assert [repr(module) for module in mine] == [repr(module) for module in theirs]
    assert {key: value.shape for key, value in mine.state_dict().items()} == {
        key: value.shape for key, value in theirs.state_dict().items()
    }
    assert VGG_POOL_INDEX[backbone] == tuple(i for i, module in enumerate(theirs) if isinstance(module, torch.nn.MaxPool2d))
    assert all(isinstance(theirs[index], torch.nn.ReLU) for index in VGG_TAP_INDEX[backbone].values())


def test_teacher_is_frozen_and_stays_in_eval_mode():
    teacher = built("vgg16", TAPS)
    teacher.train()
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("width", [0.25, 1.0])
def test_student_predicts_every_tap_at_the_teachers_shape(width):
    teacher = built("vgg16", TAPS)
    student = Student(teacher, width)
    images = torch.randn(2, 3, 64, 64)
    assert [m.shape for m in student(images)] == [m.shape for m in teacher(images)]


def test_vgg19_taps_and_bad_taps_are_checked():
    assert built("vgg19", ["relu3_4", "relu4_4"]).channels == [256, 512]
    with pytest.raises(ValueError, match="relu9_9"):
        tap_indices("vgg16", ["relu9_9"])
    with pytest.raises(ValueError, match="network order"):
        tap_indices("vgg16", ["relu4_3", "relu2_2"])
    with pytest.raises(ValueError, match="backbone"):
        tap_indices("resnet18", ["relu2_2"])


def test_residual_attention_keeps_shape_and_only_adds_a_gated_copy():
    block = ResidualAttention(32)
    features = torch.rand(2, 32, 8, 8)
    out = block(features)
    assert out.shape == features.shape
    # Gates are sigmoids in (0,1): out = F + F*A lies strictly between F and 2F for positive F.
    assert torch.all(out > features) and torch.all(out < 2 * features)


def test_discrepancy_is_one_minus_cosine():
    a = torch.randn(1, 16, 4, 4)
    assert torch.allclose(discrepancy_map(a, a), torch.zeros(1, 4, 4), atol=1e-6)
    assert torch.allclose(discrepancy_map(a, -a), torch.full((1, 4, 4), 2.0), atol=1e-5)
    assert torch.allclose(discrepancy_map(a, 3 * a), torch.zeros(1, 4, 4), atol=1e-6)


def test_loss_decreases_on_a_tiny_set():
    torch.manual_seed(0)
    teacher = Teacher("vgg16", ["relu2_2", "relu3_3"])
    student = Student(teacher, 0.25)
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        targets = teacher(images)
    optimiser = torch.optim.Adam(student.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = distillation_loss(targets, student(images))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_weights_from_explicit_file_match_the_file(teacher_weights):
    weights = resolve_teacher_weights("vgg16", str(teacher_weights))
    assert weights.source == f"file:{teacher_weights.resolve()}"
    assert not weights.is_random
    teacher = built("vgg16", TAPS)
    teacher.load_weights(weights.state_dict, weights.source)
    direct = torch.load(teacher_weights, weights_only=True)
    assert torch.equal(teacher.features[0].weight, direct["0.weight"])


def test_weights_from_environment_variable(monkeypatch, tmp_path):
    state = torchvision.models.vgg16(weights=None).state_dict()  # whole VGG: "features." prefix
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    monkeypatch.setenv(TEACHER_WEIGHTS_ENV, str(path))
    weights = resolve_teacher_weights("vgg16", None)
    assert weights.source == f"file:{path.resolve()}"
    assert torch.equal(weights.state_dict["0.weight"], state["features.0.weight"])


def test_random_teacher_is_recorded_and_reproducible():
    first = resolve_teacher_weights("vgg16", "random", seed=3)
    second = resolve_teacher_weights("vgg16", "random", seed=3)
    assert first.is_random and first.source == "random:seed=3"
    assert fingerprint(first.state_dict) == fingerprint(second.state_dict)
    assert fingerprint(first.state_dict) != fingerprint(resolve_teacher_weights("vgg16", "random", seed=4).state_dict)


def test_missing_or_foreign_weight_files_say_how_to_provide_weights(tmp_path):
    with pytest.raises(TeacherWeightsError, match="LINEGUARD_TEACHER_WEIGHTS"):
        resolve_teacher_weights("vgg16", str(tmp_path / "absent.pth"))
    not_weights = tmp_path / "notes.pth"
    not_weights.write_text("hello")
    with pytest.raises(TeacherWeightsError, match="cannot read"):
        resolve_teacher_weights("vgg16", str(not_weights))
    torch.save({"fc.weight": torch.zeros(2)}, tmp_path / "other.pth")
    teacher = built("vgg16", TAPS)
    with pytest.raises(TeacherWeightsError, match="lacks teacher layers"):
        teacher.load_weights(resolve_teacher_weights("vgg16", str(tmp_path / "other.pth")).state_dict, "other.pth")


def test_no_weights_anywhere_stops_with_instructions(monkeypatch):
    """Without a path, a variable, or torchvision's cache and network, training cannot start."""
    monkeypatch.delenv(TEACHER_WEIGHTS_ENV, raising=False)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models.VGG16_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(TeacherWeightsError, match="--teacher-weights PATH"):
        resolve_teacher_weights("vgg16", None)


def test_hard_loss_averages_only_the_worst_reproduced_positions():
    torch.manual_seed(0)
    teacher, student = [torch.randn(2, 8, 10, 10)], [torch.randn(2, 8, 10, 10)]
    distances = 2.0 * discrepancy_map(teacher[0], student[0]).flatten()
    worst_tenth = distances.sort(descending=True).values[:20].mean()
    assert distillation_loss(teacher, student, hard_fraction=0.1) == pytest.approx(float(worst_tenth), rel=1e-6)
    assert distillation_loss(teacher, student) == pytest.approx(float(distances.mean()), rel=1e-6)


def test_hard_feature_loss_averages_only_the_worst_reproduced_single_features():
    torch.manual_seed(0)
    teacher, student = [torch.randn(2, 8, 10, 10)], [torch.randn(2, 8, 10, 10)]
    features = feature_distances(teacher[0], student[0])
    # Per position, the features' mean is the plain loss's distance, 2 - 2 cos.
    assert torch.allclose(features.mean(dim=1), 2.0 * discrepancy_map(teacher[0], student[0]), atol=1e-5)
    worst = features.flatten().sort(descending=True).values[:16].mean()
    assert distillation_loss(teacher, student, hard_features=0.01) == pytest.approx(float(worst), rel=1e-6)
    # The hardest features are not the hardest positions: the two losses differ.
    assert distillation_loss(teacher, student, hard_features=0.01) != pytest.approx(
        float(distillation_loss(teacher, student, hard_fraction=0.01)), rel=0.01
    )
    assert distillation_loss(teacher, student, hard_features=1.0) == pytest.approx(float(distillation_loss(teacher, student)), rel=1e-6)


def test_imitation_penalty_is_one_per_scale_for_a_copy_and_zero_for_the_unlike():
    torch.manual_seed(0)
    teacher = [torch.randn(2, 8, 6, 6), torch.randn(2, 16, 3, 3)]
    assert imitation_penalty(teacher, [t * 3.0 for t in teacher]) == pytest.approx(2.0, rel=1e-5)
    # Opposite features are as unlike as orthogonal ones: nothing is asked beyond cos <= 0.
    assert imitation_penalty(teacher, [-t for t in teacher]) == pytest.approx(0.0, abs=1e-6)
    halfway = imitation_penalty(teacher, [torch.randn_like(t) for t in teacher])
    assert 0.05 < float(halfway) < 1.0


def test_standardised_discrepancy_is_half_the_mean_squared_difference_and_the_losses_agree():
    torch.manual_seed(0)
    teacher, student = [torch.randn(2, 8, 10, 10)], [torch.randn(2, 8, 10, 10)]
    expected = 0.5 * (teacher[0] - student[0]).square().mean(dim=1)
    assert torch.allclose(discrepancy_map(teacher[0], student[0], "standardised"), expected, atol=1e-6)
    # Unlike the cosine, it sees size: a student three times the teacher is not a match.
    assert float(discrepancy_map(teacher[0], 3 * teacher[0], "standardised").mean()) > 1.0
    features = feature_distances(teacher[0], student[0], "standardised")
    assert torch.allclose(features.mean(dim=1), 2.0 * expected, atol=1e-5)
    assert distillation_loss(teacher, student, kind="standardised") == pytest.approx(float(2.0 * expected.mean()), rel=1e-6)
    worst = features.flatten().sort(descending=True).values[:16].mean()
    assert distillation_loss(teacher, student, hard_features=0.01, kind="standardised") == pytest.approx(float(worst), rel=1e-6)
