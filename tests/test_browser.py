"""The app in a real browser: headless Chromium (Debian's package) driven by Playwright.

One app launch and one browser for the whole module. Every tab is opened and
screenshotted; a digit is drawn with mouse strokes, a sentence is translated, pictures are
uploaded. Screenshots go to a temporary folder, or to the folder given with
`--screenshots`, as the README's are made:

    python -m pytest tests/test_browser.py --screenshots docs/screenshots
"""
import os
import re
import time
from pathlib import Path

import pytest

from core.data import REPO

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    pytest.skip("playwright is not installed (pip install -r requirements.txt)", allow_module_level=True)
if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium (apt-get install chromium; .ci/run does)", allow_module_level=True)

from app import TABS  # noqa: E402

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking"]
SLOW = 60_000  # ms: the first call of a tab may load its models on a busy 2-core machine


@pytest.fixture(scope="module")
def page(app_url):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(20_000)
        page.goto(app_url)
        page.locator('button[role="tab"]').first.wait_for()
        yield page
        browser.close()


@pytest.fixture(scope="module")
def screenshots(request, tmp_path_factory) -> Path:
    folder = request.config.getoption("--screenshots")
    folder = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_tab(page, tab: str):
    """Open a tab from the navigation: its theme's button, then its own (both bars wrap, so
    every button is on the page, never in a menu)."""
    theme = page.locator(f'#groups > .tab-wrapper button[role="tab"][data-tab-id="{TABS[tab]}"]')
    button = page.locator(f'#tabs-{TABS[tab]} > .tab-wrapper button[role="tab"][data-tab-id="{tab}"]')
    # A click that lands while the bars re-render after a server update (an Overview button
    # selects a tab through the server) is lost, as a user's would be; click again.
    for attempt in range(3):
        theme.click()
        try:
            expect(button).to_be_visible(timeout=5_000)
            break
        except AssertionError:
            if attempt == 2:
                raise
    button.click()
    expect(page.locator(f"#tab-{tab}")).to_be_visible()


def shoot(page, screenshots: Path, tab: str):
    page.wait_for_function("""tab => [...document.querySelectorAll(`#tab-${tab} img`)].every(i => i.complete)""",
                           arg=tab, timeout=SLOW)  # the server may be loading a model
    page.mouse.move(0, 0)  # no hover highlights in the picture
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(screenshots / f"{tab}.png"))


def no_error_toast(page):
    expect(page.locator(".toast-body.error")).to_have_count(0)


def test_every_tab_opens(page, screenshots):
    """Each tab shows its content without a build error; its screenshot is saved (the
    tabs tested below replace theirs with one taken after using them)."""
    for tab in TABS:
        open_tab(page, tab)
        panel = page.locator(f"#tab-{tab}")
        assert "This tab failed to load" not in panel.inner_text()
        shoot(page, screenshots, tab)
    no_error_toast(page)


def test_overview_buttons_open_their_tabs(page):
    open_tab(page, "overview")
    expect(page.locator("#overview-card-mnist")).to_contain_text("%")  # a measured number
    page.locator("#overview-open-fizzbuzz").click()
    expect(page.locator("#tab-fizzbuzz")).to_be_visible()
    expect(page.locator("#tab-overview")).to_be_hidden()
    expect(page).to_have_url(re.compile(r"[?&]tab=fizzbuzz"))


def draw_seven(page, canvas):
    """One mouse stroke: the top bar left to right, then the diagonal down to the left."""
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2  # the paper is centred
    points = [(cx - 70, cy - 90), (cx + 70, cy - 90), (cx - 15, cy + 100)]
    page.mouse.move(*points[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        for i in range(1, 16):
            page.mouse.move(x0 + (x1 - x0) * i / 15, y0 + (y1 - y0) * i / 15)
    page.mouse.up()


def test_mnist_reads_a_digit_drawn_with_the_mouse(page, screenshots):
    open_tab(page, "mnist")
    pad = page.locator("#mnist-sketchpad")
    # The tab's script picks the brush (the editor starts with no tool) within half a second.
    expect(pad).not_to_contain_text("select the draw tool")
    draw_seven(page, pad.locator("canvas").first)
    for model in ("cnn", "lenet", "mlp"):
        expect(page.locator(f"#mnist-label-{model} [data-testid='label-output-value']")).to_have_text(
            "7", timeout=SLOW)
    no_error_toast(page)
    shoot(page, screenshots, "mnist")


def test_the_semi_supervised_gan_reads_a_digit_drawn_with_the_mouse(page):
    """Both of the GAN tab's classifiers answer a drawn seven; the one trained with the GAN's
    unlabelled digits names it."""
    open_tab(page, "gan")
    pad = page.locator("#gan-sgan-sketchpad")
    pad.scroll_into_view_if_needed()
    expect(pad).not_to_contain_text("select the draw tool")
    draw_seven(page, pad.locator("canvas").first)
    expect(page.locator("#gan-sgan-semi [data-testid='label-output-value']")).to_have_text("7", timeout=SLOW)
    expect(page.locator("#gan-sgan-alone [data-testid='label-output-value']")).not_to_be_empty()
    no_error_toast(page)


def draw_face(page, canvas):
    """An oval, two eyes, a nose and a smile, each one mouse stroke, over the tab's guide."""
    import math

    box = canvas.bounding_box()
    # The 280x280 paper sits in the middle of the editor's canvas, at about 100% zoom; the
    # points are in the guide's own 280-px coordinates (demos/examples/draw_faces.py).
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def stroke(points):
        page.mouse.move(cx + points[0][0] - 140, cy + points[0][1] - 140)
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(cx + x - 140, cy + y - 140, steps=2)
        page.mouse.up()

    ellipse = lambda cx, cy, rx, ry, a0=0, a1=360: [(cx + rx * math.cos(math.radians(a)),  # noqa: E731
                                                     cy + ry * math.sin(math.radians(a)))
                                                    for a in range(a0, a1 + 1, 15)]
    for points in (ellipse(140, 150, 72, 108), ellipse(102, 116, 17, 8), ellipse(178, 116, 17, 8),
                   [(140, 120), (134, 160), (142, 168)], ellipse(140, 190, 28, 14, 20, 160)):
        stroke(points)


def test_image_to_image_paints_a_face_drawn_with_the_mouse(page, screenshots):
    """A face drawn stroke by stroke over the guide comes back as a face: OpenCV's face finder
    (not the network's own judge) finds one in the picture the tab shows."""
    import io

    from PIL import Image

    from models.faces import find_face

    open_tab(page, "image_to_image")
    pad = page.locator("#i2i-sketchpad")
    expect(pad).not_to_contain_text("select the draw tool")
    draw_face(page, pad.locator("canvas").first)
    face = page.locator("#i2i-face img")
    expect(face).to_have_count(1, timeout=SLOW)
    expect(page.locator("#i2i-sketch-status")).not_to_contain_text("empty")
    # every stroke sends the drawing again: wait until the face for the whole drawing stays
    src, deadline = None, time.monotonic() + SLOW / 1000
    while time.monotonic() < deadline and face.get_attribute("src") != src:
        src = face.get_attribute("src")
        page.wait_for_timeout(1500)
    picture = Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB")
    assert picture.size == (256, 256)
    find_face(picture, "face the tab painted")  # raises NoFace when there is none
    no_error_toast(page)
    shoot(page, screenshots, "image_to_image")


def test_translation_of_a_typed_sentence(page, screenshots):
    open_tab(page, "translation")
    page.locator("#translation-input textarea").fill("A man in a blue shirt is riding a bike down the street.")
    page.locator("#tab-translation").get_by_role("button", name="Translate", exact=True).click()
    german = page.locator("#translation-output textarea")
    expect(german).to_have_value(re.compile(r"\bMann\b"), timeout=SLOW)
    no_error_toast(page)
    shoot(page, screenshots, "translation")


def cifar10_test_picture(path: Path, index: int = 7003) -> Path:
    """A real CIFAR-10 test image (a horse every trained CNN here names), upscaled 4x as a PNG."""
    from PIL import Image

    from core import data

    images, labels = data.cifar10("test")
    assert data.CIFAR10_CLASSES[labels[index]] == "horse"
    Image.fromarray(images[index].permute(1, 2, 0).numpy()).resize((128, 128), Image.Resampling.BICUBIC).save(path)
    return path


needs_data = pytest.mark.skipif(not os.environ.get("DLP_DATA_MIRROR") and not (REPO / "data").exists(),
                                reason="the data is not configured (set DLP_DATA_MIRROR)")


def card_answers(page, tab: str):
    """The top answers every model card of a tab shows now (empty cards show none)."""
    return page.locator(f"#tab-{tab} [id^='{tab}-label-'] [data-testid='label-output-value']")


@needs_data
def test_cifar10_classifies_an_upload(page, screenshots, tmp_path):
    open_tab(page, "cifar10")
    page.locator("#cifar10-image input[type='file']").set_input_files(str(cifar10_test_picture(tmp_path / "horse.png")))
    for model in ("vgg", "resnet20"):
        expect(page.locator(f"#cifar10-label-{model} [data-testid='label-output-value']")).to_have_text(
            "horse", timeout=SLOW)
    no_error_toast(page)
    shoot(page, screenshots, "cifar10")


@needs_data
def test_cifar10_remove_image_empties_every_model_card(page, tmp_path):
    """No card keeps an answer for a picture that is no longer there."""
    open_tab(page, "cifar10")
    if page.locator("#cifar10-image img").count() == 0:
        page.locator("#cifar10-image input[type='file']").set_input_files(str(cifar10_test_picture(tmp_path / "h.png")))
    expect(page.locator("#cifar10-label-vgg [data-testid='label-output-value']")).to_have_text("horse", timeout=SLOW)
    cards = page.locator("#tab-cifar10 [id^='cifar10-label-']").count()
    assert card_answers(page, "cifar10").count() == cards > 10
    page.locator("#cifar10-image").get_by_role("button", name="Remove Image").click()
    expect(card_answers(page, "cifar10")).to_have_count(0, timeout=5_000)
    no_error_toast(page)


def test_mnist_clear_right_after_a_stroke_leaves_no_prediction(page):
    """Clear pressed at once after the last stroke: the prediction for that stroke must not
    land beside the empty canvas afterwards."""
    open_tab(page, "mnist")
    pad = page.locator("#mnist-sketchpad")
    expect(pad).not_to_contain_text("select the draw tool")
    cnn = page.locator("#mnist-label-cnn [data-testid='label-output-value']")
    for wait in (0, 150, 400):  # ms between lifting the pen and pressing Clear
        draw_seven(page, pad.locator("canvas").first)
        page.wait_for_timeout(wait)
        page.locator("#tab-mnist").get_by_role("button", name="Clear", exact=True).click()
        page.wait_for_timeout(3_000)  # time for a late prediction to land, if one could
        expect(card_answers(page, "mnist")).to_have_count(0)
    no_error_toast(page)
    draw_seven(page, pad.locator("canvas").first)  # and the canvas still draws after Clear
    expect(cnn).to_have_text("7", timeout=SLOW)


DETECTION_PHOTO = "maksssksksss15"  # a test-split photo (never trained on): two people, both with masks


@needs_data
@pytest.mark.skipif(not (REPO / "checkpoints" / "detection_efficientnet" / "model.safetensors").exists(),
                    reason="no detector trained yet (python -m train.detection)")
def test_detection_finds_faces_in_an_upload(page, screenshots):
    """The status names the faces the annotation has, by class."""
    from demos import detection

    root = detection.data.face_mask_dir(download=False)
    record = next(r for r in detection.split(detection.load_annotations(root))["test"] if r["stem"] == DETECTION_PHOTO)
    truth = [detection.CLASSES[int(k) - 1] for k in record["labels"]]
    listed = ", ".join(f"{truth.count(c)} {c}" for c in detection.CLASSES if c in truth)
    open_tab(page, "detection")
    panel = page.locator("#tab-detection")
    panel.locator("input[type='file']").first.set_input_files(str(detection.image_path(root, DETECTION_PHOTO)))
    expect(page.locator("#detection-status")).to_have_text(f"Found {len(truth)} faces: {listed}.", timeout=SLOW)
    no_error_toast(page)
    shoot(page, screenshots, "detection")


def test_faces_refuses_an_oversized_upload_once_and_empties_its_preview(page, tmp_path):
    """A 9000x9000 PNG (81 megapixels, 0.3 MB): one message, said once, no "Error" on every
    output, and the refused picture does not stay in the preview."""
    from PIL import Image

    huge = tmp_path / "huge.png"
    Image.new("RGB", (9000, 9000), (200, 180, 160)).save(huge)
    open_tab(page, "faces")
    panel = page.locator("#tab-faces")
    panel.locator("#faces-photo-a input[type='file']").set_input_files(str(huge))
    expect(page.locator("#faces-verdict")).to_contain_text("megapixels", timeout=SLOW)
    assert page.locator("#faces-verdict").inner_text().count("megapixels") == 1
    expect(panel.locator("#faces-photo-a img")).to_have_count(0)
    expect(panel.locator(".error")).to_have_count(0)
    no_error_toast(page)


def test_faces_compares_two_uploads(page, screenshots):
    from demos.faces import ASTRONAUT

    open_tab(page, "faces")
    panel = page.locator("#tab-faces")
    for box in ("#faces-photo-a", "#faces-photo-b"):
        panel.locator(f"{box} input[type='file']").set_input_files(str(ASTRONAUT))
        expect(panel.locator(f"{box} img").first).to_be_visible(timeout=SLOW)
    panel.get_by_role("button", name="Compare").click()
    expect(page.locator("#faces-verdict")).to_contain_text("Same person", timeout=SLOW)
    no_error_toast(page)
    shoot(page, screenshots, "faces")


def test_light_dark_button_switches_theme(page, screenshots):
    """The header's button flips the page between Gradio's light and dark themes (for the
    room a talk is in), and back."""
    open_tab(page, "overview")
    # The theme's colours are CSS variables, redefined under .dark (gradio/themes/base.py).
    background = "() => getComputedStyle(document.body).getPropertyValue('--body-background-fill')"
    was_dark = page.evaluate("() => document.body.classList.contains('dark')")
    before = page.evaluate(background)
    page.locator("#theme-toggle").click()
    assert page.evaluate("() => document.body.classList.contains('dark')") != was_dark
    expect(page.locator("#overview-card-mnist")).to_contain_text("%")
    assert page.evaluate(background) != before
    page.locator("#theme-toggle").click()
    assert page.evaluate("() => document.body.classList.contains('dark')") == was_dark


def test_a_feed_forward_run_finishes_within_3_s_while_another_user_optimises(page, quiet):
    """Two users in two browsers: one starts an optimisation (it holds the style-transfer lane
    for minutes), the other's feed-forward run is back within 3 s, and the first one's Stop
    says where it stopped."""
    from demos import style_transfer as demo

    if not demo.fast_paintings():
        pytest.skip("no trained feed-forward network")
    photo = str(demo.CONTENT_EXAMPLES[2])
    # the bare app: page.url carries the last tab's link, which a new page would open by itself
    other = new_page(page, width=1280)
    try:
        open_tab(other, "style_transfer")
        heavy = other.locator("#tab-style_transfer")
        heavy.locator("#style-content input[type='file']").set_input_files(photo)
        heavy.locator("#style-style input[type='file']").set_input_files(str(demo.made_examples()[1]))
        # long enough to be running when stopped, on a fast machine too (500 steps at 512 px)
        for box, value in (("#style-steps", "500"), ("#style-size", "512")):
            number = heavy.locator(f"{box} input[type='number']")
            number.fill(value)
            number.press("Enter")
        heavy.get_by_role("button", name="Stylise", exact=True).click()
        expect(other.locator("#style-status")).to_contain_text("Step ", timeout=SLOW)

        open_tab(page, "style_transfer")
        light = page.locator("#tab-style_transfer")
        light.locator("#style-content input[type='file']").set_input_files(photo)
        # their own painting: the feed-forward network for any painting when it is trained
        light.locator("#style-style input[type='file']").set_input_files(str(demo.made_examples()[0]))
        light.get_by_text("Feed-forward (a trained network, one pass)", exact=True).click()
        for box in ("#style-content", "#style-style"):  # both uploads shown (and their checks answered)
            expect(light.locator(f"{box} img")).to_be_visible(timeout=SLOW)
        page.wait_for_timeout(1000)
        # Timed in the page, from the click to the answer on screen: Playwright's own polling
        # of the status (up to a second apart) and its checks before a click are not the app's.
        go = light.get_by_role("button", name="Stylise", exact=True)
        go.evaluate("""button => {
            const status = document.querySelector('#tab-style_transfer #style-status');
            button.addEventListener('click', () => { window.dlpClicked = performance.now(); }, {capture: true, once: true});
            new MutationObserver(() => {
                if (window.dlpClicked && !window.dlpAnswered && status.innerText.includes('Feed-forward, '))
                    window.dlpAnswered = performance.now();
            }).observe(status, {subtree: true, childList: true, characterData: true});
        }""")
        go.click()
        expect(page.locator("#style-status")).to_contain_text("Feed-forward, ", timeout=SLOW)
        took = page.evaluate("() => (window.dlpAnswered - window.dlpClicked) / 1000")
        expect(other.locator("#style-status")).to_contain_text("Step ")  # the optimisation still runs
        assert took < 3, took

        heavy.get_by_role("button", name="Stop", exact=True).click()
        expect(other.locator("#style-status")).to_contain_text("Stopped at step ", timeout=2_000)
        # the loss chart's legend names the terms inside its box (Gradio's box had cut it off)
        legend = other.locator("#style-losses .role-legend")
        expect(legend).to_contain_text("total")
        box, shown = other.locator("#style-losses").bounding_box(), legend.bounding_box()
        assert shown["height"] > 5 and shown["y"] + shown["height"] <= box["y"] + box["height"], (shown, box)
        no_error_toast(page)
        no_error_toast(other)
    finally:
        other.context.close()


def test_bring_your_own_classes_shows_thumbnails_and_a_downloaded_head_loads_back(page, tmp_path):
    """Teachable Machine's loop: a class's uploads show as thumbnails, the head trains, downloads
    as a file, and that file loaded back classifies again."""
    import skimage

    photos = Path(skimage.__file__).parent / "data"
    open_tab(page, "transfer")
    panel = page.locator("#tab-transfer")
    panel.locator("#transfer-files-1 input[type='file']").set_input_files([str(photos / "chelsea.png"),
                                                                          str(photos / "astronaut.png")])
    panel.locator("#transfer-files-2 input[type='file']").set_input_files([str(photos / "coffee.png"),
                                                                          str(photos / "rocket.jpg")])
    expect(panel.locator("#transfer-class-1 img")).to_have_count(2, timeout=SLOW)
    expect(panel.locator("#transfer-class-2 img")).to_have_count(2)
    panel.get_by_role("button", name="Train head").click()
    expect(panel.locator("#transfer-fit-status")).to_contain_text("Head trained on cats (2), dogs (2)", timeout=SLOW)
    panel.get_by_role("button", name="Download the head").click()
    with page.expect_download(timeout=SLOW) as download:
        panel.locator("#transfer-saved-head a").first.click()
    saved = tmp_path / "head.safetensors"
    download.value.save_as(saved)
    panel.locator("#transfer-load-head input[type='file']").set_input_files(str(saved))
    expect(panel.locator("#transfer-fit-status")).to_contain_text("Head loaded: cats, dogs", timeout=SLOW)
    no_error_toast(page)


# ---- finding things: the navigation, deep links, what a newcomer sees ------------------------

def new_page(page, query: str = "", width: int = 1400, height: int = 1000):
    """A second browser page (its own context: a new visitor) on the app, at `?query`, loaded."""
    view = page.context.browser.new_context(viewport={"width": width, "height": height}).new_page()
    view.set_default_timeout(20_000)
    view.goto(page.url.split("?")[0] + (f"?{query}" if query else ""))
    view.locator('button[role="tab"]').first.wait_for(timeout=SLOW)
    return view


# Text for developers, not for the people using the app: commands, paths, flags, file names.
DEVELOPER_TEXT = re.compile(r"python -m |python app\.py|checkpoints/|\s--[a-z][a-z-]+|"
                            r"\b(models|train|demos|core|docs)/\w+\.(py|md)|metrics\.json|safetensors")


@pytest.mark.parametrize("viewport", [(1400, 1000), (390, 844)], ids=["desktop", "phone"])
def test_every_tab_opens_from_the_navigation_with_no_tab_in_a_menu(page, viewport, screenshots):
    """At a desktop's and a phone's size every theme's and every tab's button is on the page
    (the bars wrap; no "More tabs" menu), opens its tab, and the title fits on the screen."""
    width, height = viewport
    view = new_page(page, width=width, height=height)
    try:
        for tab, group in TABS.items():
            theme = view.locator(f'#groups > .tab-wrapper button[role="tab"][data-tab-id="{group}"]')
            expect(theme).to_be_visible()
            theme.click()
            button = view.locator(f'#tabs-{group} > .tab-wrapper button[role="tab"][data-tab-id="{tab}"]')
            expect(button).to_be_visible()
            assert button.bounding_box()["x"] + button.bounding_box()["width"] <= width
            button.click()
            expect(view.locator(f"#tab-{tab}")).to_be_visible()
            expect(view.get_by_role("button", name="More tabs")).to_have_count(0)
        title = view.locator("#title h1")
        box = title.bounding_box()
        assert box["x"] + box["width"] <= width
        # "Playground" is not broken inside the word: the title's lines are whole words
        words = view.evaluate("""() => { const h = document.querySelector('#title h1'), r = document.createRange();
            r.selectNodeContents(h); return [...r.getClientRects()].length; }""")
        assert words <= 2, words
        view.screenshot(path=str(screenshots / f"navigation_{width}x{height}.png"))
    finally:
        view.context.close()


def test_no_developer_text_is_visible_until_the_about_section_is_opened(page):
    """A newcomer sees what each tab does, not commands or paths; those are in its collapsed
    "About this model" part. (A page of its own: what other tests did, e.g. a downloaded head's
    file name, is not what a newcomer sees.)"""
    view = new_page(page)
    try:
        for tab in TABS:
            open_tab(view, tab)
            panel = view.locator(f"#tab-{tab}")
            view.wait_for_timeout(300)
            shown = [line for line in panel.inner_text().splitlines() if DEVELOPER_TEXT.search(line)]
            assert not shown, (tab, shown)
        open_tab(view, "translation")
        about = view.locator("#about-translation")
        about.get_by_text("About this model", exact=False).first.click()
        expect(about).to_contain_text("python -m train.translation")
    finally:
        view.context.close()


def test_a_link_opens_a_prepared_translation_view(page):
    """A lecturer's link opens the tab with the sentence and the beam set, and translated; the
    address bar then follows what the user changes."""
    view = new_page(page, "tab=translation&text=Two+dogs+play+in+the+snow.&beam=1")
    try:
        expect(view.locator("#tab-translation")).to_be_visible()
        expect(view.locator("#translation-input textarea")).to_have_value("Two dogs play in the snow.")
        expect(view.locator("#translation-output textarea")).to_have_value(re.compile(r"Hunde.*Schnee"), timeout=SLOW)
        beam = view.locator("#tab-translation input[type='number']").first
        expect(beam).to_have_value("1")
        view.locator("#translation-input textarea").fill("A man rides a bike.")
        view.locator("#translation-input textarea").blur()  # a textbox says it changed when it is left
        view.wait_for_function("() => new URL(location.href).searchParams.get('text') === 'A man rides a bike.'")
        assert "tab=translation" in view.url
        open_tab(view, "faces")
        view.wait_for_function("() => location.search === '?tab=faces'")
        no_error_toast(view)
    finally:
        view.context.close()


def test_a_link_opens_a_prepared_style_transfer_view(page, screenshots):
    """?tab=style_transfer&content=rocket&style=brush_strokes&method=fast sets the photo, the
    style image and the method, and shows the feed-forward result at once."""
    from demos import style_transfer as demo

    if not demo.has_arbitrary():
        pytest.skip("no trained network for any painting")
    view = new_page(page, "tab=style_transfer&content=rocket&style=brush_strokes&method=fast&painting=any&strength=0.8")
    try:
        panel = view.locator("#tab-style_transfer")
        expect(panel).to_be_visible()
        for box in ("#style-content", "#style-style"):
            expect(panel.locator(f"{box} img")).to_be_visible(timeout=SLOW)
        expect(view.locator("#style-status")).to_contain_text("Feed-forward, ", timeout=SLOW)
        expect(panel.get_by_label("Feed-forward (a trained network, one pass)")).to_be_checked()
        no_error_toast(view)
        view.screenshot(path=str(screenshots / "style_transfer_link.png"))
    finally:
        view.context.close()


def test_charts_follow_the_dark_theme(page, screenshots):
    """In the dark theme a chart is not a white box: it is drawn on transparent and inverted."""
    view = new_page(page, "__theme=dark&tab=translation&text=A+dog+runs+on+the+beach.")
    try:
        chart = view.locator("#tab-translation .matplotlib img").first
        expect(chart).to_be_visible(timeout=SLOW)
        assert "invert(1)" in chart.evaluate("e => getComputedStyle(e).filter")
        chart.scroll_into_view_if_needed()
        view.screenshot(path=str(screenshots / "translation_dark.png"))
        open_tab(view, "overview")
        charts = view.locator("#tab-overview .chart img")
        assert charts.count() >= 3  # the curves among the Overview's thumbnails
        assert "invert(1)" in charts.first.evaluate("e => getComputedStyle(e).filter")
        view.evaluate("window.scrollTo(0, 0)")
        view.screenshot(path=str(screenshots / "overview_dark.png"))
    finally:
        view.context.close()
