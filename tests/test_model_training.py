import json

import numpy as np
import pytest

from model.checkpoint import load_checkpoint, read_checkpoint
from model.errors import DatasetError
from model.evaluation import evaluate
from model.images import list_images, read_image
from model.recipe import Recipe, TrainingSettings
from model.training import train


@pytest.fixture(scope="module")
def small_model(small_checkpoint):
    return load_checkpoint(small_checkpoint, device="cpu", precision="fp32")


def test_synthetic_defects_score_higher_than_good_parts(small_model, synthetic_category):
    good = [read_image(p) for p in list_images(synthetic_category / "test" / "good")]
    defective = [read_image(p) for p in list_images(synthetic_category / "test" / "defective")]
    good_scores = [r.raw_score for r in small_model.score_images(good)]
    defect_scores = [r.raw_score for r in small_model.score_images(defective)]
    pairs_ranked_right = np.mean([d > g for d in defect_scores for g in good_scores])
    assert pairs_ranked_right >= 0.9, (good_scores, defect_scores)


def test_maps_come_back_at_each_images_own_size(small_model):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (90, 160, 3), dtype=np.uint8), rng.integers(0, 255, (200, 120, 3), dtype=np.uint8)]
    results = small_model.score_images(images)
    assert [r.anomaly_map.shape for r in results] == [(90, 160), (200, 120)]
    for result in results:
        assert 0.0 <= result.score <= 1.0
        assert result.is_anomaly == (result.score > 0.5)


def test_checkpoint_records_recipe_teacher_calibration_and_data(small_checkpoint, teacher_weights):
    payload = read_checkpoint(small_checkpoint)
    assert payload["recipe"]["image_size"] == 128 and payload["recipe"]["taps"] == ["relu2_2", "relu3_3"]
    assert payload["teacher_source"] == f"file:{teacher_weights.resolve()}"
    assert payload["random_teacher"] is False
    assert payload["recipe"]["input_shape"] == [128, 128]
    assert payload["training_data"]["n_images"] == 24
    assert (payload["training_data"]["n_train"], payload["training_data"]["n_calibration"]) == (14, 10)
    assert payload["calibration"]["false_reject_rate"] == 0.01
    assert set(payload["library_versions"]) >= {"torch", "torchvision", "numpy"}


def test_checkpoint_round_trip_scores_identically(small_checkpoint, synthetic_category):
    images = [read_image(p) for p in list_images(synthetic_category / "test" / "defective")[:2]]
    first = load_checkpoint(small_checkpoint, device="cpu", precision="fp32")
    second = load_checkpoint(small_checkpoint, device="cpu", precision="fp32")
    assert first.version == second.version
    for a, b in zip(first.score_images(images), second.score_images(images)):
        assert a.raw_score == pytest.approx(b.raw_score, rel=1e-5)
        assert np.allclose(a.anomaly_map, b.anomaly_map, atol=1e-5)


def test_bf16_scores_rank_like_fp32(small_checkpoint, synthetic_category):
    images = [read_image(p) for p in sorted((synthetic_category / "test").rglob("*.png"))]
    fp32 = [r.raw_score for r in load_checkpoint(small_checkpoint, device="cpu", precision="fp32").score_images(images)]
    bf16 = [r.raw_score for r in load_checkpoint(small_checkpoint, device="cpu", precision="bf16").score_images(images)]
    assert np.corrcoef(fp32, bf16)[0, 1] > 0.98


def test_evaluation_writes_metrics_and_pictures(small_model, synthetic_category, tmp_path):
    figures = evaluate(small_model, synthetic_category, tmp_path / "report", progress=False)
    written = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(written) == {
        "image_auroc", "pixel_auroc", "aupro", "image_f1_max", "false_reject_rate", "defect_recall", "n_good", "n_defective", "seconds"
    }
    assert written == figures
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "false_reject_rate", "defect_recall"):
        assert isinstance(written[key], float) and 0.0 <= written[key] <= 1.0
    assert (written["n_good"], written["n_defective"]) == (4, 6)
    assert written["pixel_auroc"] > 0.8
    for picture in ("roc_curves.png", "score_histogram.png"):
        assert (tmp_path / "report" / picture).stat().st_size > 5000
    assert len(list((tmp_path / "report" / "worst_misses").glob("*.png"))) == 6
    assert len((tmp_path / "report" / "scores.csv").read_text().splitlines()) == 11


def test_evaluation_names_a_defect_image_without_its_mask(small_model, synthetic_category, tmp_path):
    import shutil

    broken = tmp_path / "category"
    shutil.copytree(synthetic_category, broken)
    (broken / "ground_truth" / "defective" / "002_mask.png").unlink()
    with pytest.raises(DatasetError, match="002.png has no mask"):
        evaluate(small_model, broken, tmp_path / "report", progress=False)


def test_evaluation_names_a_mask_of_another_size(small_model, synthetic_category, tmp_path):
    import shutil

    import cv2

    broken = tmp_path / "category"
    shutil.copytree(synthetic_category, broken)
    cv2.imwrite(str(broken / "ground_truth" / "defective" / "001_mask.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match="001_mask.png is 10x10"):
        evaluate(small_model, broken, tmp_path / "report", progress=False)


def test_training_skips_unreadable_files_and_records_them(tmp_path, synthetic_category, teacher_weights, caplog):
    import shutil

    folder = tmp_path / "good"
    shutil.copytree(synthetic_category / "train" / "good", folder)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    recipe = Recipe(image_size=64, student_width=0.125, taps=["relu2_2"])
    settings = TrainingSettings(steps=1, batch_size=4, device="cpu")
    train(folder, tmp_path / "m.pt", recipe, settings, str(teacher_weights), progress=False)
    payload = read_checkpoint(tmp_path / "m.pt")
    assert sorted(payload["training_data"]["skipped_files"]) == ["broken.png", "notes.txt"]
    assert payload["training_data"]["layout"] == "folder"
    assert "broken.png" in caplog.text
    assert "differ in size" not in caplog.text  # one size: nothing to say about pixel scales


def test_random_teacher_is_marked_in_the_checkpoint(tmp_path, synthetic_category):
    recipe = Recipe(image_size=64, student_width=0.125, taps=["relu2_2"])
    settings = TrainingSettings(steps=1, batch_size=4, device="cpu")
    train(synthetic_category, tmp_path / "r.pt", recipe, settings, "random", progress=False)
    model = load_checkpoint(tmp_path / "r.pt", device="cpu")
    assert model.random_teacher and read_checkpoint(tmp_path / "r.pt")["random_teacher"] is True


@pytest.mark.parametrize("count", [0, 13])
def test_too_few_images_is_a_clear_error(tmp_path, synthetic_category, count):
    import shutil

    folder = tmp_path / "few"
    folder.mkdir()
    for path in list_images(synthetic_category / "train" / "good")[:count]:
        shutil.copy(path, folder)
    with pytest.raises(DatasetError, match="needs at least 14: 10 held out to calibrate"):
        train(folder, tmp_path / "m.pt", Recipe(), TrainingSettings(steps=1, device="cpu"), "random", progress=False)
    assert not (tmp_path / "m.pt").exists()


def test_calibration_scores_are_those_of_the_scoring_path(small_checkpoint, synthetic_category):
    """The threshold is set from exactly the scores the worker would give the held-out images."""
    from model.training import CALIBRATION_BATCH

    data = read_checkpoint(small_checkpoint)["training_data"]
    model = load_checkpoint(small_checkpoint, device="cpu", precision=data["precision"])
    paths = [synthetic_category / "train" / "good" / name for name in data["calibration_images"]]
    scores = []
    for start in range(0, len(paths), CALIBRATION_BATCH):
        scores += [r.raw_score for r in model.score_images([read_image(p) for p in paths[start : start + CALIBRATION_BATCH]])]
    assert scores == pytest.approx(data["calibration_scores"], rel=1e-6)
    assert model.calibration.n_images == len(paths) == 10


def test_calibration_images_are_never_trained_on(small_checkpoint):
    data = read_checkpoint(small_checkpoint)["training_data"]
    assert len(set(data["calibration_images"])) == data["n_calibration"] == 10
    assert data["n_train"] + data["n_calibration"] == data["n_images"]


def test_a_round_of_teacher_features_is_bounded_by_its_memory_not_by_the_data():
    from model.scoring import TeacherStudent
    from model.training import views_per_round

    network = TeacherStudent(Recipe(input_shape=(256, 256)), initialise=False)  # its shapes count, not its weights
    bytes_per_view = 2 * (128 * 128 * 128 + 256 * 64 * 64 + 512 * 32 * 32)
    settings = TrainingSettings(steps=10_000, batch_size=8, feature_memory_mb=512, feature_reuse=4)
    assert views_per_round(network, settings) == 512 * 2**20 // bytes_per_view
    # A short budget needs fewer views than memory allows; no reuse needs one batch at a time.
    assert views_per_round(network, settings.model_copy(update={"steps": 10})) == 20
    assert views_per_round(network, settings.model_copy(update={"feature_reuse": 1})) == 8
    # With the penalty, the unrelated images' features (half a view per view) share the memory.
    assert views_per_round(network, settings.model_copy(update={"unrelated_penalty": 1.0})) == int(512 * 2**20 // (1.5 * bytes_per_view))


def test_a_small_defect_on_a_long_strip_is_found(tmp_path, teacher_weights):
    """A 2000x500 strip keeps its shape (input 128x512, not a squashed square) and a pit of 24 px
    across, 0.05% of the image, is found where it is."""
    import cv2

    from model.synthetic import STRIP_SHAPE, good_strip

    rng = np.random.default_rng(3)
    folder = tmp_path / "strips"
    folder.mkdir()
    for index in range(24):
        cv2.imwrite(str(folder / f"{index:02d}.png"), cv2.cvtColor(good_strip(STRIP_SHAPE, rng), cv2.COLOR_RGB2BGR))
    recipe = Recipe(image_size=256, student_width=0.25, taps=["relu2_2", "relu3_3"])
    settings = TrainingSettings(steps=80, batch_size=4, device="cpu", seed=0)
    train(folder, tmp_path / "strip.pt", recipe, settings, str(teacher_weights), progress=False)
    model = load_checkpoint(tmp_path / "strip.pt", device="cpu")
    assert model.recipe.input_shape == (128, 512)

    good = [good_strip(STRIP_SHAPE, rng) for _ in range(4)]
    defective = good_strip(STRIP_SHAPE, rng)
    centre = (730, 160)  # (x, y), between two mounting holes
    cv2.circle(defective, centre, 12, (40, 40, 40), -1)
    results = model.score_images(good + [defective])
    assert results[-1].anomaly_map.shape == STRIP_SHAPE
    assert results[-1].raw_score > max(r.raw_score for r in results[:-1])
    peak_y, peak_x = np.unravel_index(np.argmax(results[-1].anomaly_map), STRIP_SHAPE)
    assert np.hypot(peak_x - centre[0], peak_y - centre[1]) < 40


def test_scale_weights_put_each_scale_of_good_parts_at_the_same_mean():
    """After fitting, every scale of the good images' maps averages 1 / taps: none outweighs another."""
    import torch

    from model.geometry import to_network_input
    from model.scoring import TeacherStudent
    from model.training import fit_scale_weights

    torch.manual_seed(0)
    network = TeacherStudent(Recipe(input_shape=(64, 64), taps=["relu2_2", "relu3_3"], student_width=0.125))
    images = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(10)]
    means = fit_scale_weights(network, images, torch.device("cpu"), "fp32")["map_means"]
    assert means[0] != pytest.approx(means[1], rel=0.05)  # the raw scales differ, so the test can fail
    with torch.inference_mode():
        weighted = [float((m * w).mean()) for m, w in zip(network.scale_maps(to_network_input(images)), network.scale_weights)]
    assert weighted == pytest.approx([0.5, 0.5], rel=1e-3)


def test_score_spread_weighting_gives_every_scale_the_same_spread_of_image_scores():
    """With score_spread, each scale's weighted map gives the good sample's images scores of one
    spread, and the factors on the mean weighting average 1."""
    import torch

    from model.geometry import to_network_input
    from model.scoring import TeacherStudent, image_score
    from model.training import fit_scale_weights

    images = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(10)]
    weights = {}
    for weighting in ("map_mean", "score_spread"):
        torch.manual_seed(0)
        network = TeacherStudent(Recipe(input_shape=(64, 64), taps=["relu2_2", "relu3_3"], student_width=0.125, scale_weighting=weighting))
        statistics = fit_scale_weights(network, images, torch.device("cpu"), "fp32")
        weights[weighting] = network.scale_weights.clone()
    with torch.inference_mode():
        spreads = [
            float(torch.stack([image_score(network.recipe, b) for b in network.blur(m * w)]).std(unbiased=False))
            for m, w in zip(network.scale_maps(to_network_input(images)), network.scale_weights)
        ]
    assert statistics["score_spreads"][0] != pytest.approx(statistics["score_spreads"][1], rel=0.05)  # so the test can fail
    assert spreads[0] == pytest.approx(spreads[1], rel=1e-3)
    assert float((weights["score_spread"] / weights["map_mean"]).mean()) == pytest.approx(1.0, rel=1e-5)


def test_a_tiled_models_score_spreads_are_those_of_its_whole_images_through_the_scoring_path():
    """With tiles, each tap's spread is that of the scores the scoring path gives whole images (every
    tile stitched), not of one crop each: for a texture those vary several times less."""
    import torch

    from model.scoring import InspectionModel, TeacherStudent
    from model.training import fit_scale_weights

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (int(rng.integers(64, 160)), int(rng.integers(64, 160)), 3), dtype=np.uint8) for _ in range(10)]
    torch.manual_seed(0)
    recipe = Recipe(input_shape=(64, 64), taps=["relu2_2", "relu3_3"], student_width=0.125, pixel_scale=1.0, scale_weighting="score_spread")
    network = TeacherStudent(recipe)
    statistics = fit_scale_weights(network, images, torch.device("cpu"), "fp32")
    model = InspectionModel.from_network(network, None, "test", "random", torch.device("cpu"), "fp32")
    for tap, mean in enumerate(statistics["map_means"]):
        network.scale_weights.copy_(torch.eye(2)[tap] / mean)
        assert model.raw_scores(images).std() == pytest.approx(statistics["score_spreads"][tap], rel=1e-4)


def test_unrelated_images_are_varied_and_drawn_from_the_seed():
    from model.synthetic import unrelated_image

    first = [unrelated_image((48, 80), np.random.default_rng(seed)) for seed in (1, 2)]
    assert first[0].shape == (48, 80, 3) and first[0].dtype == np.uint8
    assert np.array_equal(first[0], unrelated_image((48, 80), np.random.default_rng(1)))
    assert not np.array_equal(first[0], first[1])
    assert first[0].std() > 5


def test_the_penalty_pass_leaves_batchnorm_statistics_to_the_good_parts():
    import torch

    from model.scoring import TeacherStudent
    from model.synthetic import unrelated_image
    from model.training import unrelated_penalty_term

    network = TeacherStudent(Recipe(input_shape=(64, 64), taps=["relu2_2"], student_width=0.125))
    student = network.student.train()
    before = {k: v.clone() for k, v in student.state_dict().items() if "running" in k}
    images = np.stack([unrelated_image((64, 64), np.random.default_rng(i)) for i in range(2)])
    with torch.no_grad():
        targets = network.teacher(torch.zeros(2, 3, 64, 64))
    penalty = unrelated_penalty_term(student, targets, images, torch.device("cpu"))
    assert penalty.requires_grad and student.training
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items() if "running" in k)


def test_the_penalty_keeps_the_student_from_imitating_the_teacher_on_unrelated_images(synthetic_category, teacher_weights):
    """Trained alike but for the penalty, the penalised student imitates the teacher less on
    unrelated images it never saw, relative to good parts, and still about as well on good parts."""
    import torch

    from model.geometry import fit_image, to_network_input
    from model.loss import imitation_penalty
    from model.scoring import TeacherStudent
    from model.synthetic import unrelated_image
    from model.teacher import resolve_teacher_weights
    from model.training import train_student

    weights = resolve_teacher_weights("vgg16", str(teacher_weights))
    good = [fit_image(read_image(p), 64, 64).pixels for p in list_images(synthetic_category / "train" / "good")]
    unrelated = to_network_input([unrelated_image((64, 64), np.random.default_rng(100 + i)) for i in range(8)])
    imitation = {}
    for penalty in (0.0, 1.0):
        torch.manual_seed(0)
        network = TeacherStudent(Recipe(input_shape=(64, 64), taps=["relu2_2"], student_width=0.125))
        network.teacher.load_weights(weights.state_dict, weights.source)
        settings = TrainingSettings(steps=30, batch_size=4, device="cpu", unrelated_penalty=penalty)
        train_student(network, good, settings, torch.device("cpu"), "fp32", np.random.default_rng(0), progress=False)
        network.eval()
        with torch.inference_mode():
            imitation[penalty] = [
                float(imitation_penalty(network.teacher(x), network.student(x))) for x in (unrelated, to_network_input(good[:8]))
            ]
    (plain_unrelated, plain_good), (penalised_unrelated, penalised_good) = imitation[0.0], imitation[1.0]
    # 30 steps teach a tiny student little (mean cosine about 0.2 on good parts), so the test asks
    # for the direction, relative to good parts: about 0.45 penalised against 0.64 plain on this CPU.
    assert penalised_unrelated / penalised_good < 0.8 * plain_unrelated / plain_good
    assert penalised_good > 0.8 * plain_good


def test_colour_jitter_relights_training_views_within_its_bounds_and_only_when_asked():
    """A lamp's drift: each channel scaled by an exposure gain times its own gain, both in 1 ± jitter;
    with the default (0) a training view is the camera augmentation alone, drawn as before."""
    from model.augment import augmented_view
    from model.training import training_view

    image = np.full((32, 32, 3), 100, np.uint8)
    relit_means = np.array([training_view(image, Recipe(image_size=32, colour_jitter=0.2), np.random.default_rng(seed)).mean(axis=(0, 1)) for seed in range(40)])
    assert relit_means.min() >= 100 * 0.8 * 0.8 - 8 - 1 and relit_means.max() <= 100 * 1.2 * 1.2 + 8 + 1  # the camera's offset is ±8
    assert np.ptp(relit_means[:, 0] - relit_means[:, 2]) > 10  # channels change apart: white balance, not only exposure
    plain = training_view(image, Recipe(image_size=32), np.random.default_rng(3))
    assert np.array_equal(plain, augmented_view(image, np.random.default_rng(3)))


def test_local_tint_casts_one_smooth_bounded_patch_and_only_when_asked():
    """A cast in one place: within 1 ± strength everywhere, strong somewhere, absent far from its
    centre in some views (it is local, unlike `relit`), and smooth (no step a defect could resemble)."""
    from model.augment import tinted
    from model.training import training_view

    image = np.full((64, 64, 3), 100, np.uint8)
    views = [tinted(image, np.random.default_rng(seed), 0.2).astype(np.float32) for seed in range(40)]
    assert min(v.min() for v in views) >= 80 - 1 and max(v.max() for v in views) <= 120 + 1
    casts = [np.abs(v - 100).max(axis=2) for v in views]
    assert max(c.max() for c in casts) > 10
    assert sum(c.max() - c.min() > 5 for c in casts) > 20  # somewhere cast, elsewhere (nearly) not
    assert max(np.abs(np.diff(v, axis=0)).max() for v in views) <= 3  # a 64 px fade, not an edge
    plain = training_view(image, Recipe(image_size=64), np.random.default_rng(3))
    assert np.array_equal(plain, training_view(image, Recipe(image_size=64, local_tint=0.0), np.random.default_rng(3)))
    assert not np.array_equal(plain, training_view(image, Recipe(image_size=64, local_tint=0.2), np.random.default_rng(3)))


def test_standardised_teacher_channels_have_mean_0_and_spread_1_on_the_good_sample():
    """The statistics are those of the images they were taken from: standardised targets of the
    same images average 0 and spread 1 per channel, except where a near-silent channel's spread
    was raised to the floor."""
    import torch

    from model.geometry import to_network_input
    from model.scoring import TeacherStudent
    from model.training import FLOOR_OF_MEDIAN_SPREAD, fit_feature_statistics

    torch.manual_seed(0)
    network = TeacherStudent(Recipe(input_shape=(64, 64), taps=["relu2_2", "relu3_3"], student_width=0.125, discrepancy="standardised"))
    images = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(10)]
    fit_feature_statistics(network, images, torch.device("cpu"), "fp32")
    with torch.inference_mode():
        raw = network.teacher(to_network_input(images))
        targets = network.teacher_targets(to_network_input(images))
    for tap, (features, standardised) in enumerate(zip(raw, targets)):
        spreads = features.std(dim=(0, 2, 3), unbiased=False)
        floored = spreads < FLOOR_OF_MEDIAN_SPREAD * spreads.median()
        assert torch.allclose(standardised.mean(dim=(0, 2, 3)), torch.zeros(1), atol=1e-3)
        assert torch.allclose(standardised.std(dim=(0, 2, 3), unbiased=False)[~floored], torch.ones(1), atol=1e-3)
        assert bool((standardised.std(dim=(0, 2, 3), unbiased=False)[floored] < 1).all())


def test_a_standardised_model_trains_saves_and_finds_the_defects(tmp_path, synthetic_category, teacher_weights):
    recipe = Recipe(image_size=128, student_width=0.25, taps=["relu2_2", "relu3_3"], discrepancy="standardised")
    out = tmp_path / "standardised.pt"
    train(synthetic_category, out, recipe, TrainingSettings(steps=80, batch_size=4, device="cpu"), str(teacher_weights), progress=False)
    payload = read_checkpoint(out)
    assert payload["recipe"]["discrepancy"] == "standardised"
    means, spreads = payload["state_dict"]["feature_statistics"]
    assert means.shape == (128 + 256,) and bool((spreads > 0).all()) and not bool((means == 0).all())
    model = load_checkpoint(out, device="cpu", precision="fp32")
    good = [read_image(p) for p in list_images(synthetic_category / "test" / "good")]
    defective = [read_image(p) for p in list_images(synthetic_category / "test" / "defective")]
    good_scores = [r.raw_score for r in model.score_images(good)]
    defect_scores = [r.raw_score for r in model.score_images(defective)]
    assert np.mean([d > g for d in defect_scores for g in good_scores]) >= 0.9, (good_scores, defect_scores)


def test_the_unrelated_penalty_is_refused_with_the_standardised_discrepancy(tmp_path, synthetic_category, teacher_weights):
    recipe = Recipe(image_size=64, student_width=0.125, taps=["relu2_2"], discrepancy="standardised")
    with pytest.raises(ValueError, match="cosine discrepancy only"):
        train(synthetic_category, tmp_path / "x.pt", recipe, TrainingSettings(steps=2, unrelated_penalty=1.0), str(teacher_weights), progress=False)
    assert not (tmp_path / "x.pt").exists()
