"""Launch the app as a user does (`python app.py`) and call its endpoints with gradio_client."""
import os

import pytest
from gradio_client import Client, handle_file

from conftest import running_app
from core.data import REPO

pytestmark = pytest.mark.app  # every test here talks to a running server

EXAMPLES = REPO / "demos" / "examples" / "mnist"


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def sketch(path):
    """A Sketchpad value as the browser sends it: the drawing as background-less layer."""
    return {"background": None, "layers": [handle_file(str(path))], "composite": handle_file(str(path))}


def test_every_tab_built(client):
    """A tab whose build() raises is replaced by a message and the others still serve, so
    only the page says so: no component of the page may hold that message."""
    import app

    texts = [str(c.get("props", {}).get("value", "")) for c in client.config["components"]]
    assert not [t for t in texts if "This tab failed to load" in t]
    ids = {c["props"].get("id") for c in client.config["components"] if c["type"] == "tabitem"}
    assert ids == set(app.TABS) | set(app.GROUPS), ids


def test_fizzbuzz_endpoints(client):
    assert client.predict(15, api_name="/fizzbuzz_play") == "fizzbuzz"
    assert client.predict(98, api_name="/fizzbuzz_play") == "98"
    table, summary = client.predict(1, 100, api_name="/fizzbuzz_play_range")
    assert len(table["data"]) == 100
    assert "100/100 correct" in summary
    assert [row[1] for row in table["data"][:5]] == ["1", "2", "fizz", "4", "buzz"]


def test_fizzbuzz_bad_input_is_a_message_not_a_crash(client):
    with pytest.raises(Exception, match="1023"):
        client.predict(5000, api_name="/fizzbuzz_play")
    with pytest.raises(Exception, match="range is empty"):
        client.predict(50, 10, api_name="/fizzbuzz_play_range")
    assert client.predict(3, api_name="/fizzbuzz_play") == "fizz"  # still up


@pytest.mark.parametrize("digit", [3, 7])
def test_mnist_predict_endpoint(client, digit):
    *labels, seen, status = client.predict(sketch(EXAMPLES / f"digit_{digit}.png"), api_name="/mnist_predict")
    assert status == ""
    assert [label["label"] for label in labels] == [str(digit)] * 3
    assert os.path.exists(seen)


def test_mnist_empty_canvas_is_a_message(client):
    blank = {"background": None, "layers": [], "composite": None}
    *labels, seen, status = client.predict(blank, api_name="/mnist_predict")
    assert not any(labels) and seen is None
    assert "empty" in status


def test_mnist_model_card_endpoint(client):
    text, plot, gallery = client.predict("lenet", api_name="/mnist_model_card")
    assert "test accuracy" in text and len(gallery) > 0


def test_gan_endpoints(client):
    grid, card = client.predict("cdcgan", 3, "7", api_name="/gan_sample")
    assert os.path.exists(grid) and "requested digit" in card
    strip, gif = client.predict("dcgan", 0, 0, 1, 5, 6, "any", api_name="/gan_walk")
    assert os.path.exists(strip) and gif.endswith(".gif")
    edited = client.predict("dcgan", 0, 3, "any", 1.0, 0.0, -1.0, api_name="/gan_edit")
    assert os.path.exists(edited)
    frame, note = client.predict("dcgan", 0, api_name="/gan_timelapse")
    assert os.path.exists(frame) and "epoch 1" in note
    with pytest.raises(Exception, match="(?i)minimum|seed"):
        client.predict("dcgan", -5, "any", api_name="/gan_sample")


def test_semi_supervised_gan_endpoints(client):
    semi, alone, status = client.predict(sketch(EXAMPLES / "digit_3.png"), api_name="/gan_sgan_classify")
    assert status == "" and semi["label"] == "3" and alone["label"]
    assert os.path.exists(client.predict(5, api_name="/gan_sgan_sample"))
    blank = {"background": None, "layers": [], "composite": None}
    semi, alone, status = client.predict(blank, api_name="/gan_sgan_classify")
    assert not semi and not alone and "empty" in status  # an emptied Label comes back as {}


def test_image_to_image_endpoints(client):
    faces = REPO / "demos" / "examples" / "faces"
    face, status = client.predict(sketch(faces / "face_simple.png"), api_name="/image_to_image_sketch")
    assert status == "" and os.path.exists(face)
    blank = {"background": None, "layers": [], "composite": None}
    face, status = client.predict(blank, api_name="/image_to_image_sketch")
    assert face is None and "empty" in status
    from core import checkpoints
    from demos.image_to_image import SKIMAGE_DATA
    from models.image_to_image import MASK, checkpoint_name

    photo, astronaut = (handle_file(str(SKIMAGE_DATA / name)) for name in ("coffee.png", "astronaut.png"))
    if checkpoints.find(checkpoint_name("grey_to_colour")):
        coloured, grey, status = client.predict(photo, api_name="/image_to_image_colour")
        assert status == "" and os.path.exists(coloured) and os.path.exists(grey)
    if checkpoints.find(checkpoint_name(MASK)):
        found, changed, note = client.predict(astronaut, "add_mask", api_name="/image_to_image_mask")
        assert os.path.exists(found) and os.path.exists(changed) and "detector saw" in note
    else:  # not trained yet: the tab says what to run
        with pytest.raises(Exception, match="python -m train.cyclegan"):
            client.predict(astronaut, "add_mask", api_name="/image_to_image_mask")


def test_vae_endpoints(client):
    decoded, plot = client.predict("fashion_vae2d", 0.5, -0.5, api_name="/vae_decode_point")
    assert os.path.exists(decoded)
    strip = client.predict("mnist_vae16", 0, 1, 5, api_name="/vae_interpolate")
    assert os.path.exists(strip)
    seen, recon = client.predict("mnist_vae16", sketch(EXAMPLES / "digit_2.png"), api_name="/vae_reconstruct")
    assert os.path.exists(seen) and os.path.exists(recon)
    with pytest.raises(Exception, match="empty"):
        client.predict("mnist_vae16", {"background": None, "layers": [], "composite": None}, api_name="/vae_reconstruct")


def test_cifar10_endpoints(client, tmp_path):
    from demos.cifar10 import EXAMPLES as PICTURES

    *labels, seen, status = client.predict(handle_file(str(PICTURES[0])), api_name="/cifar10_classify")
    assert status == "" and os.path.exists(seen)
    assert any(label and label.get("confidences") for label in labels)
    text, curves_plot, confusion, gallery = client.predict("cnn", api_name="/cifar10_model_card")
    assert "test accuracy" in text
    layers = client.predict(handle_file(str(PICTURES[0])), "cnn", api_name="/cifar10_inside")
    assert len(layers) == 6 and all(os.path.exists(item["image"]) for item in layers)  # input, 4 layers, Grad-CAM
    assert "Grad-CAM" in layers[-1]["caption"]
    plot, note = client.predict("relu", "he", "adam", True, True, 0, 1, 500, api_name="/cifar10_lab_train")
    assert "Epoch 1/1" in note


def test_cifar10_bad_uploads_are_messages(client, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("this is not a picture")
    # said once, in the status, with every card empty (not an "Error" on every card)
    *labels, seen, status = client.predict(handle_file(str(notes)), api_name="/cifar10_classify")
    emptied = [label is None or (isinstance(label, dict) and not label.get("value")) for label in labels]
    assert "not a picture" in status and seen is None and all(emptied), (status, labels[:2])
    # the tab reads the upload itself, and Gradio still refuses a server path nobody uploaded
    # (over plain HTTP: gradio_client would upload the local file first)
    from benchmarks.api import http_call

    status, message = http_call(client.src, "/cifar10_classify", [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}],
                                raw_values=(0,))
    assert status == "error" and "not uploaded" in message, message
    tiny = tmp_path / "tiny.png"
    from PIL import Image

    Image.new("RGB", (2, 2)).save(tiny)
    *labels, seen, status = client.predict(handle_file(str(tiny)), api_name="/cifar10_classify")
    assert "too small" in status and seen is None
    with pytest.raises(Exception, match="(?i)minimum|epochs"):
        client.predict("relu", "he", "adam", True, True, 0, 0, 500, api_name="/cifar10_lab_train")


def test_transfer_bring_your_own_classes_endpoints(client, tmp_path):
    from test_transfer import shape_image

    files = {}
    for kind in ("disc", "square"):
        files[kind] = []
        for s in range(3):
            path = tmp_path / f"{kind}{s}.png"
            shape_image(kind, s).save(path)
            files[kind].append(handle_file(str(path)))
    head_status = client.predict("cifar10_resnet20", "discs", "squares", "", "", "", files["disc"], files["square"],
                                 None, None, None, api_name="/transfer_fit_head")
    assert "Head trained on discs (3), squares (3)" in head_status
    probe = tmp_path / "probe.png"
    shape_image("disc", 42).save(probe)
    result, status = client.predict(handle_file(str(probe)), api_name="/transfer_predict")
    assert result["label"] == "discs" and status == ""
    status = client.predict("cifar10_resnet20", "discs", "squares", "", "", "", files["disc"], None,
                            None, None, None, api_name="/transfer_fit_head")
    assert status == "Class 'squares' has no images: add a few, or remove its name."


def test_transfer_refused_uploads_are_one_status_message(client, tmp_path):
    """The tab reads its uploads itself (preprocess=False): a text file named .png and a 2x2
    picture give one sentence in the status, the other outputs empty (not an "Error" on each),
    and a server path nobody uploaded is still refused."""
    from PIL import Image

    from benchmarks.api import http_call
    from test_transfer import shape_image

    notes, tiny = tmp_path / "notes.png", tmp_path / "tiny.png"
    notes.write_text("this is not a picture")
    Image.new("RGB", (2, 2)).save(tiny)
    good = []
    for kind in ("disc", "square"):
        shape_image(kind, 0).save(tmp_path / f"{kind}.png")
        good.append(handle_file(str(tmp_path / f"{kind}.png")))
    for path, said in ((notes, "it is not a picture this tab can read"), (tiny, "is only 2x2 pixels: too small")):
        assert "Head trained" in client.predict("cifar10_resnet20", "discs", "squares", "", "", "", [good[0]],
                                                [good[1]], None, None, None, api_name="/transfer_fit_head")
        top5, heat_map, note = client.predict(handle_file(str(path)), api_name="/transfer_what_it_sees")
        assert not top5 and heat_map is None and said in note, note
        result, status = client.predict(handle_file(str(path)), api_name="/transfer_predict")
        assert not result and "test image" in status and said in status, status
        status = client.predict("cifar10_resnet20", "discs", "squares", "", "", "", [good[0], handle_file(str(path))],
                                [good[1]], None, None, None, api_name="/transfer_fit_head")
        assert "image 2 of 'discs'" in status and said in status, status
    passwd = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}
    for api_name, data, raw in (("/transfer_what_it_sees", [passwd], (0,)), ("/transfer_predict", [passwd], (0,)),
                                ("/transfer_fit_head", ["cifar10_resnet20", "discs", "squares", "", "", "", [passwd],
                                                        [good[1]], None, None, None], (6,))):
        outcome, message = http_call(client.src, api_name, data, raw_values=raw)
        assert outcome == "error" and "not uploaded" in message, (api_name, message)


def test_transfer_live_training_endpoint(client):
    plot, status = client.predict("digits", "frozen", 5, 2, "cifar10_resnet20", api_name="/transfer_train")
    assert "Epoch 2/2" in status


def test_text_classification_endpoint(client):
    *labels, highlighted, note = client.predict("湖人主场加时险胜晋级西部决赛", "textcnn", api_name="/text_classify")
    assert labels[0]["label"] == "sports 体育"
    assert highlighted  # characters with their weights
    *labels, highlighted, note = client.predict("   ！！", "textcnn", api_name="/text_classify")
    assert "punctuation" in note and not labels[0]


def test_faces_endpoint(client):
    from demos.faces import ASTRONAUT

    face_a, face_b, verdict = client.predict(handle_file(str(ASTRONAUT)), handle_file(str(ASTRONAUT)), "center",
                                             api_name="/faces_compare")
    assert face_a and face_b and "same person" in verdict.lower()
    with pytest.raises(Exception, match="No second photo"):
        client.predict(handle_file(str(ASTRONAUT)), None, "center", api_name="/faces_compare")


@pytest.mark.skipif(not (REPO / "checkpoints" / "speech" / "model.safetensors").exists(),
                    reason="speech checkpoint not committed yet")
def test_speech_endpoints(client, tmp_path):
    import numpy as np
    import scipy.signal
    import soundfile

    from models.speech import build_utterance, load_clips

    # "four one nine" by a training speaker's validation takes, as a 48 kHz stereo upload
    wave = build_utterance(load_clips()["val"], [4, 1, 9], np.random.default_rng(7))
    path = tmp_path / "digits.wav"
    soundfile.write(path, np.stack([scipy.signal.resample_poly(wave, 6, 1)] * 2, axis=1), 48000)
    transcript, digits, spectrogram, alignment, note = client.predict(handle_file(str(path)),
                                                                      api_name="/speech_transcribe")
    assert transcript == "four one nine" and digits == "419"
    assert spectrogram and alignment
    silence = tmp_path / "silence.wav"
    soundfile.write(silence, np.zeros(16000, np.int16), 8000)
    transcript, digits, spectrogram, alignment, note = client.predict(handle_file(str(silence)),
                                                                      api_name="/speech_transcribe")
    assert transcript == "" and "silence" in note
    notes = tmp_path / "notes.wav"
    notes.write_text("this is not audio")
    with pytest.raises(Exception, match="Could not read"):
        client.predict(handle_file(str(notes)), api_name="/speech_transcribe")
    sound, said = client.predict(api_name="/speech_random_example")
    assert os.path.exists(sound) and "Said" in said


TRANSLATION_CHECKPOINT = REPO / "checkpoints" / "translation" / "model.safetensors"


@pytest.mark.skipif(not TRANSLATION_CHECKPOINT.exists(),
                    reason="no translation checkpoint committed yet (train it with `python -m train.translation`)")
def test_translation_endpoints(client):
    german, note, attention, steps = client.predict("A man in a blue shirt is standing on a ladder cleaning windows.",
                                                    4, 0.6, "cross", api_name="/translation_translate")
    assert "Mann" in german and note == ""
    assert attention is not None and steps["data"][-1][1] == "</s>"
    assert client.predict("A dog runs.", 1, 0.6, "encoder", api_name="/translation_attention") is not None
    with pytest.raises(Exception, match="punctuation"):
        client.predict("  ?! ...", 4, 0.6, "cross", api_name="/translation_translate")
    german, note, *_ = client.predict("A dog runs. " * 500, 1, 0.6, "cross", api_name="/translation_translate")
    assert "first 20" in note and german  # still up, and says what it left out


@pytest.mark.slow  # a second server that computes every example (two style-transfer optimisations) at start
def test_cached_examples_come_from_the_cache(tmp_path):
    """`python app.py --cache-examples` runs every example at start-up: a click on one
    (here through its endpoint, by row) is answered from the cache, optimisation included."""
    with running_app(tmp_path / "server.log", "--tabs", "style_transfer", "faces", "--cache-examples",
                     timeout=180) as url:
        cached = Client(url, verbose=False, download_files=False)
        result, pair, status = cached.predict(1, api_name="/style_transfer_example")  # an optimisation
        assert "Step 60/60" in status and result["path"].endswith(".png")
        # A click while start-up caching is still running computes the example itself; once it
        # is cached, every click shows the cached run. Its status gives the seconds that run
        # took, so two clicks that each ran again would differ.
        cached_status = cached.predict(1, api_name="/style_transfer_example")[2]
        assert cached.predict(1, api_name="/style_transfer_example")[2] == cached_status
        face_a, face_b, verdict = cached.predict(0, api_name="/faces_example")
        assert "same person" in verdict.lower() and face_a is not None
