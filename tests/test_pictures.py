"""core.pictures.read_picture: the one reader every tab's picture goes through."""
import numpy as np
import pytest
from PIL import Image, ImageFile

from core.errors import BadInput
from core.pictures import MAX_PIXELS, read_picture


def pixels(image):
    return np.asarray(image).astype(int)


def test_rgb_file_is_read_as_is(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    picture = read_picture(tmp_path / "a.png")
    assert picture.mode == "RGB" and picture.size == (40, 30)
    np.testing.assert_array_equal(np.asarray(picture), array)
    np.testing.assert_array_equal(np.asarray(read_picture(str(tmp_path / "a.png"))), array)


def test_transparency_is_white_for_rgba_la_and_palette(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)  # black ink on a fully transparent canvas, like the Sketchpad's
    rgba[5:15, 8:12, 3] = 255
    expected = np.full((20, 20, 3), 255)
    expected[5:15, 8:12] = 0
    for value in (rgba, Image.fromarray(rgba), {"background": None, "layers": [], "composite": rgba}):
        np.testing.assert_array_equal(pixels(read_picture(value)), expected)
    Image.fromarray(rgba).convert("LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(pixels(read_picture(tmp_path / "la.png")), expected)
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    palette.paste(1, (5, 5, 10, 10))
    palette.save(tmp_path / "p.png", transparency=0)  # index 0 (black) is transparent
    picture = pixels(read_picture(tmp_path / "p.png"))
    assert (picture[0, 0] == 255).all() and picture[7, 7].tolist() == [200, 10, 10]


def test_notes_say_what_was_changed():
    notes = []
    rgba = np.zeros((20, 20, 4), np.uint8)
    read_picture(rgba, "style", notes=notes)
    assert any("transparent" in n and "style" in n for n in notes)
    notes = []
    read_picture(np.full((20, 20), 90, np.uint8), notes=notes)
    assert notes == ["the picture is grayscale: used as gray RGB"]
    notes = []
    read_picture(np.full((20, 20, 3), (10, 200, 30), np.uint8), notes=notes)
    assert notes == []


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    for value in (tmp_path / "g16.png", ramp):
        picture = pixels(read_picture(value))
        np.testing.assert_allclose(picture[:, :, 0], ramp / 257, atol=1)
        assert 100 < picture.mean() < 155  # not all white
    dark = np.full((10, 10), 200, np.uint16)
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    assert pixels(read_picture(tmp_path / "dark16.png")).max() <= 1  # a dark 16-bit file stays dark


def test_array_kinds_agree():
    image = np.zeros((12, 10), np.uint8)
    image[3:9, 2:5] = 255
    reference = pixels(read_picture(image))
    for variant in (image > 0, image / 255.0, (image / 255.0 * 1.0005).astype(np.float32), image.astype(np.int64),
                    image.astype(np.uint16) * 257, image[:, :, None], np.stack([image] * 3, -1)):
        np.testing.assert_array_equal(pixels(read_picture(variant)), reference)


@pytest.mark.parametrize("bad, message", [(np.full((5, 5), np.nan), "NaN"), (np.full((5, 5), -3), "0..255"),
                                          (np.array([["a"]]), "numbers"), (np.zeros((4, 4, 2), np.uint8), "HxW"),
                                          (np.zeros(7, np.uint8), "HxW"), (None, "No picture"), ("", "No picture"),
                                          ({"composite": None}, "No picture")])
def test_unusable_values_are_clear_messages(bad, message):
    with pytest.raises(BadInput, match=message):
        read_picture(bad)


def test_files_that_are_not_pictures_are_clear_messages(tmp_path):
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(BadInput, match="not a picture"):
        read_picture(tmp_path / "text.png")
    Image.new("RGB", (200, 200), "red").save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:120])
    with pytest.raises(BadInput):
        read_picture(tmp_path / "cut.png")


def test_too_many_pixels_is_refused_before_decoding(tmp_path):
    side = int(MAX_PIXELS ** 0.5) + 10
    Image.new("1", (side, side)).save(tmp_path / "huge.png")  # a few kB on disk
    with pytest.raises(BadInput, match="megapixels"):
        read_picture(tmp_path / "huge.png")


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    picture = pixels(read_picture(tmp_path / "phone.jpg"))
    assert picture.shape == (40, 20, 3)
    assert picture[2, 10, 0] > 200 and picture[2, 10, 1] < 60  # the red edge is now on top


def test_size_limits(tmp_path):
    with pytest.raises(BadInput, match="too small"):
        read_picture(np.zeros((3, 50), np.uint8), min_side=4)
    Image.new("RGB", (4000, 1000), "blue").save(tmp_path / "wide.jpg")
    picture = read_picture(tmp_path / "wide.jpg", max_side=400)
    assert picture.size == (400, 100) and pixels(picture)[50, 200, 2] > 200
    assert read_picture(np.zeros((2500, 100), np.uint8), max_side=1000).size == (40, 1000)
    with pytest.raises(BadInput, match="20x60000 pixels: too long and thin"):
        read_picture(np.zeros((60000, 20), np.uint8), max_side=1000)


def test_pictures_that_decode_whole_are_refused_by_their_header(tmp_path, monkeypatch):
    """A 7000x7000 PNG is 150 KB of file and 196 MB decoded: refused before decoding.
    The same pixels as a JPEG decode at a reduced size, so they are read."""
    Image.new("RGB", (7000, 7000), "white").save(tmp_path / "huge.png")
    assert (tmp_path / "huge.png").stat().st_size < 1_000_000
    with monkeypatch.context() as patched:
        patched.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("the PNG was decoded"))
        with pytest.raises(BadInput, match="PNG of 7000x7000: over 16 megapixels"):
            read_picture(tmp_path / "huge.png", max_side=512)
    Image.new("RGB", (7000, 7000), "white").save(tmp_path / "huge.jpg", quality=50)
    assert read_picture(tmp_path / "huge.jpg", max_side=512).size == (512, 512)


def test_draft_decodes_jpegs_small_and_resizes_nothing_else(tmp_path):
    Image.new("RGB", (6000, 4000), (10, 200, 10)).save(tmp_path / "big.jpg")
    assert read_picture(str(tmp_path / "big.jpg"), draft=256).size == (750, 500)  # 1/8 of the sides, still over 256
    Image.new("RGB", (1200, 900), (10, 200, 10)).save(tmp_path / "big.png")
    assert read_picture(tmp_path / "big.png", draft=256).size == (1200, 900)
