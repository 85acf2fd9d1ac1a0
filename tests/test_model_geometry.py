import numpy as np
import pytest

from model.geometry import content_of, fit_image, fit_scale_spread, input_shape_for, map_to_image, to_network_input


def test_scale_spread_is_how_far_apart_whole_images_are_seen():
    assert fit_scale_spread([(1024, 1024)] * 3, (256, 256)) == 1.0
    assert fit_scale_spread([(500, 2000), (1000, 4000)], (128, 512)) == pytest.approx(2.0)
    # a narrow image fits by its height, a wide one by its width: 256/100 against 256/400
    assert fit_scale_spread([(100, 50), (200, 400)], (256, 256)) == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("shapes", "expected"),
    [
        ([(1024, 1024)], (256, 256)),
        ([(500, 2000)], (128, 512)),  # a strip keeps its 4:1 at the same pixel budget
        ([(2000, 500)], (512, 128)),
        ([(500, 1250), (500, 1250), (480, 640)], (160, 408)),  # the median aspect ratio, sides rounded to the stride
    ],
)
def test_input_shape_keeps_the_aspect_ratio_at_about_the_same_pixels(shapes, expected):
    assert input_shape_for(shapes, 256, 8) == expected


def test_input_sides_are_multiples_of_the_stride_and_never_too_short():
    height, width = input_shape_for([(100, 10_000)], 256, 16)
    assert height % 16 == 0 and width % 16 == 0
    assert height >= 4 * 16


def test_an_image_of_the_models_aspect_ratio_fills_the_input():
    image = np.random.default_rng(0).integers(0, 255, (500, 2000, 3), dtype=np.uint8)
    fitted = fit_image(image, 128, 512)
    assert fitted.pixels.shape == (128, 512, 3)
    assert (fitted.content_height, fitted.content_width) == (128, 512)


def test_another_aspect_ratio_is_scaled_to_fit_and_filled_by_reflection():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, :10] = 200  # a bright left edge, which reflection copies to the right of the content
    fitted = fit_image(image, 64, 128)
    assert fitted.pixels.shape == (64, 128, 3)
    assert (fitted.content_height, fitted.content_width) == (64, 64)
    assert fitted.pixels[:, 64:].max() <= 200
    assert np.array_equal(fitted.pixels[:, 64], fitted.pixels[:, 62])  # mirrored about the last column


def test_a_sliver_is_filled_without_failing():
    fitted = fit_image(np.full((3, 400, 3), 9, np.uint8), 64, 64)
    assert fitted.pixels.shape == (64, 64, 3) and (fitted.pixels == 9).all()


def test_maps_return_to_the_image_without_the_filling():
    fitted = fit_image(np.zeros((100, 50, 3), np.uint8), 64, 64)
    anomaly_map = np.zeros((64, 64), np.float32)
    anomaly_map[:, fitted.content_width :] = 99.0  # the filling: must not reach the image's map
    back = map_to_image(content_of(anomaly_map, fitted), 100, 50)
    assert back.shape == (100, 50) and back.max() == 0.0


def test_network_input_is_normalised_for_the_imagenet_teacher():
    batch = to_network_input([np.full((8, 16, 3), 124, np.uint8), np.zeros((8, 16, 3), np.uint8)])
    assert batch.shape == (2, 3, 8, 16)
    # 124/255 is close to ImageNet's red mean, so the first image's red channel is near zero.
    assert abs(float(batch[0, 0].mean())) < 0.02
    assert float(batch[1].max()) < 0
