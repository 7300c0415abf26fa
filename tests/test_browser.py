"""The app in a real browser: headless Chromium (Debian's package) driven by Playwright.

One app launch and one browser for the whole module. Every tab is opened and
screenshotted; a digit is drawn with mouse strokes, a sentence is translated, pictures are
uploaded. Screenshots go to a temporary folder, or to the folder given with
`--screenshots`, as the README's are made:

    python -m pytest tests/test_browser.py --screenshots docs/screenshots
"""
import functools
import json
import re
import urllib.request
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
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
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


@functools.cache
def tab_titles(app_url: str) -> dict[str, str]:
    """Tab id -> the title on its button, from the app's config."""
    config = json.load(urllib.request.urlopen(app_url + "config"))
    return {c["props"]["id"]: c["props"]["label"] for c in config["components"] if c["type"] == "tabitem"}


def open_tab(page, tab: str):
    """Click a tab's button (in the "More tabs" menu when the bar is full) and wait for it."""
    button = page.locator(f'button[role="tab"][data-tab-id="{tab}"]')
    if not button.is_visible():  # the menu's buttons carry only the title
        page.get_by_role("button", name="More tabs").click()
        button = page.locator(".overflow-dropdown button").get_by_text(tab_titles(page.url)[tab], exact=True)
    button.click()
    expect(page.locator(f"#tab-{tab}")).to_be_visible()


def shoot(page, screenshots: Path, tab: str):
    page.wait_for_function("""tab => [...document.querySelectorAll(`#tab-${tab} img`)].every(i => i.complete)""",
                           arg=tab)
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


def test_translation_of_a_typed_sentence(page, screenshots):
    open_tab(page, "translation")
    page.locator("#translation-input textarea").fill("A man in a blue shirt is riding a bike down the street.")
    page.locator("#tab-translation").get_by_role("button", name="Translate", exact=True).click()
    german = page.locator("#translation-output textarea")
    expect(german).to_have_value(re.compile(r"\bMann\b"), timeout=SLOW)
    no_error_toast(page)
    shoot(page, screenshots, "translation")


def make_picture(path: Path) -> Path:
    """A picture the test draws itself: a grey airliner in a blue sky."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), (120, 170, 230))
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 105, 280, 135), fill=(200, 200, 205))                   # fuselage
    draw.polygon([(140, 118), (200, 118), (130, 200), (110, 200)], fill=(180, 180, 185))  # wing
    draw.polygon([(50, 118), (75, 118), (45, 75), (35, 75)], fill=(180, 180, 185))        # tail fin
    image.save(path)
    return path


def test_cifar10_classifies_an_upload(page, screenshots, tmp_path):
    open_tab(page, "cifar10")
    page.locator("#cifar10-image input[type='file']").set_input_files(str(make_picture(tmp_path / "plane.png")))
    top = page.locator("#cifar10-label-vgg [data-testid='label-output-value']")
    expect(top).to_have_text(re.compile("|".join(CIFAR10_CLASSES)), timeout=SLOW)
    no_error_toast(page)
    shoot(page, screenshots, "cifar10")


@pytest.mark.skipif(not (REPO / "checkpoints" / "detection" / "model.safetensors").exists(),
                    reason="no detector trained yet (python -m train.detection)")
def test_detection_finds_faces_in_an_upload(page, screenshots, tmp_path):
    from PIL import Image

    from demos import detection, gan

    photos = detection.split_examples(1)  # a test-split photo when the data is here
    if photos:
        path = photos[0]
    else:  # faces drawn by the project's own LFW generator, four in a row on a light background
        picture = Image.new("RGB", (4 * 160 + 50, 220), (235, 235, 235))
        for i, face in enumerate(gan.sample("faces", seed=3, n=4)):
            picture.paste(Image.fromarray(face).resize((150, 150)), (10 + 170 * i, 35))
        path = tmp_path / "faces.png"
        picture.save(path)
    open_tab(page, "detection")
    panel = page.locator("#tab-detection")
    panel.locator("input[type='file']").first.set_input_files(str(path))
    # The status names what it found with the dataset's class names, or says it found no face.
    expect(page.locator("#detection-status")).to_contain_text(
        re.compile(r"Found (no faces|\d+ faces?: .*(with_mask|without_mask|mask_weared_incorrect))"), timeout=SLOW)
    no_error_toast(page)
    shoot(page, screenshots, "detection")


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
    page.screenshot(path=str(screenshots / "overview_dark.png"))
    assert page.evaluate(background) != before
    page.locator("#theme-toggle").click()
    assert page.evaluate("() => document.body.classList.contains('dark')") == was_dark
