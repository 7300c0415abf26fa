"""Draw the MNIST tab's example digits the way a mouse would: thick round strokes on a
280x280 transparent canvas (black ink, like the Sketchpad gives).

    python -m demos.examples.draw_digits     # writes demos/examples/mnist/*.png
"""
import math
from pathlib import Path

from PIL import Image, ImageDraw


def arc(cx, cy, rx, ry, start, end, steps=24):
    """Points along an ellipse, angles in degrees, y pointing down (0 = right, 90 = down)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in (start + (end - start) * i / steps for i in range(steps + 1))]


# Each digit is a list of strokes; a stroke is a polyline in the unit square.
STROKES = {
    0: [arc(0.5, 0.5, 0.27, 0.4, 0, 360)],
    1: [[(0.38, 0.24), (0.52, 0.1), (0.52, 0.9)]],
    2: [arc(0.5, 0.32, 0.25, 0.22, 180, 390) + [(0.22, 0.88), (0.8, 0.88)]],
    3: [arc(0.48, 0.3, 0.24, 0.2, 200, 450) + arc(0.48, 0.7, 0.28, 0.2, 270, 520)],
    4: [[(0.65, 0.9), (0.65, 0.1), (0.2, 0.65), (0.82, 0.65)]],
    5: [[(0.75, 0.12), (0.32, 0.12), (0.29, 0.47)] + arc(0.48, 0.66, 0.28, 0.23, 225, 510)],
    6: [[(0.68, 0.1), (0.45, 0.25), (0.3, 0.5), (0.28, 0.7)] + arc(0.5, 0.7, 0.22, 0.2, 180, 540)],
    7: [[(0.2, 0.12), (0.8, 0.12), (0.42, 0.9)]],
    8: [arc(0.5, 0.3, 0.2, 0.18, 90, 450), arc(0.5, 0.7, 0.25, 0.21, 270, 630)],
    9: [arc(0.5, 0.32, 0.22, 0.2, 0, 360) + [(0.66, 0.9)]],
}


def draw_digit(digit: int, size=(280, 280), box=(40, 40, 240, 240), brush=18) -> Image.Image:
    """An RGBA image of `digit` drawn in `box` (left, top, right, bottom) with a round brush."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    left, top, right, bottom = box
    for stroke in STROKES[digit]:
        points = [(left + x * (right - left), top + y * (bottom - top)) for x, y in stroke]
        pen.line(points, fill=(0, 0, 0, 255), width=brush, joint="curve")
        for x, y in (points[0], points[-1]):  # round caps
            pen.ellipse((x - brush / 2, y - brush / 2, x + brush / 2, y + brush / 2), fill=(0, 0, 0, 255))
    return image


# Examples at different sizes and places, as people draw them.
EXAMPLE_BOXES = {0: (60, 30, 220, 250), 1: (20, 20, 140, 150), 2: (90, 90, 270, 270), 3: (40, 40, 240, 240),
                 4: (100, 10, 260, 170), 5: (30, 120, 150, 270), 6: (50, 50, 230, 260), 7: (10, 30, 270, 250),
                 8: (80, 20, 200, 260), 9: (60, 60, 200, 220)}

if __name__ == "__main__":
    out = Path(__file__).parent / "mnist"
    out.mkdir(exist_ok=True)
    for digit, box in EXAMPLE_BOXES.items():
        draw_digit(digit, box=box).save(out / f"digit_{digit}.png")
    print(f"wrote {len(EXAMPLE_BOXES)} examples to {out}")
