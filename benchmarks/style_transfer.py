"""Style transfer on the six test photos x six paintings, for each method and feature
network: a contact sheet per combination in docs/ and a table of style loss, content loss
(both measured with the best feature network available, as train.style_transfer --eval
does) and time per picture.

    python -m benchmarks.style_transfer                    # everything (about 1 hour here)
    python -m benchmarks.style_transfer --methods fast multi arbitrary   # only the trained networks (a minute)
    python -m benchmarks.style_transfer --photos 2 --paintings 2 --steps 5 --size 128 --out /tmp/st   # a quick look

Optimisation runs the tab's defaults (Adam, 60 steps, 256 px, the feature network's style
weight, step and total-variation weight) once per available feature network (or --features); the feed-forward networks are the ones in --checkpoint-dirs
(each labelled with the feature network it was trained with). The "photo itself" row is
the unstylised photo measured the same way: the losses a method starts from.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from core import checkpoints
from core.data import REPO
from models import style_transfer as st

CELL = 160  # pixels of a contact-sheet cell


def contact_sheet(title: str, photos: dict, paintings: dict, results: dict, notes: dict | None = None) -> Image.Image:
    """Paintings along the top, photos down the side, results[(photo, painting)] inside;
    notes[painting] is written under that painting (e.g. "never seen in training")."""
    header = 28
    sheet = Image.new("RGB", ((len(paintings) + 1) * CELL, header + (len(photos) + 1) * CELL), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 8), title, fill="black")
    for j, name in enumerate(paintings, 1):
        if notes and name in notes:
            draw.text((j * CELL + 4, header + CELL - 12), notes[name], fill="red")

    def paste(picture: Image.Image, row: int, col: int):
        thumb = picture.copy()
        thumb.thumbnail((CELL - 4, CELL - 4))
        sheet.paste(thumb, (col * CELL + (CELL - thumb.width) // 2, header + row * CELL + (CELL - thumb.height) // 2))

    for j, painting in enumerate(paintings.values(), 1):
        paste(st.to_pil(painting), 0, j)
    for i, (photo_name, photo) in enumerate(photos.items(), 1):
        paste(st.to_pil(photo), i, 0)
        for j, painting_name in enumerate(paintings, 1):
            if (photo_name, painting_name) in results:
                paste(results[photo_name, painting_name], i, j)
    return sheet


def summarise(method: str, network: str, rows: list[dict]) -> dict:
    summary = {"method": method, "feature_network": network, "pairs": len(rows),
               "style_loss": float(np.mean([r["style_loss"] for r in rows])),
               "content_loss": float(np.mean([r["content_loss"] for r in rows])),
               "seconds_per_picture": float(np.mean([r["seconds"] for r in rows])), "per_pair": rows}
    if rows and "first_picture_s" in rows[0]:
        summary["first_picture_s_max"] = float(max(r["first_picture_s"] for r in rows))
    return summary


def run_optimize(network: str, photos, paintings, judge, args):
    extractor = st.load_feature_network(network)
    rows, pictures = [], {}
    for (photo_name, photo), (painting_name, painting) in tqdm(
            [(p, q) for p in photos.items() for q in paintings.items()], desc=f"optimize, {network}"):
        start, first = time.perf_counter(), None
        defaults = st.FEATURE_NETWORKS[network]
        for image, _, _ in st.stylize_steps(extractor, photo, painting, steps=args.steps,
                                            style_weight=args.style_weight or defaults.style_weight,
                                            lr=args.lr or defaults.lr, tv_weight=defaults.tv_weight,
                                            optimizer=args.optimizer):
            first = first or time.perf_counter() - start  # the tab's first preview
        seconds = time.perf_counter() - start
        rows.append({"photo": photo_name, "painting": painting_name, "seconds": seconds, "first_picture_s": first,
                     **st.measure(judge, image, photo, painting)})
        pictures[photo_name, painting_name] = st.to_pil(image)
    return rows, pictures


def run_fast(root: Path | None, photos, paintings, judge):
    """The trained networks under root, grouped by the feature network each was trained with."""
    by_network = {}
    for painting_name, painting in paintings.items():
        name = st.checkpoint_name(painting_name)
        if checkpoints.find(name, root) is None:
            print(f"no feed-forward network for {painting_name} in {root or checkpoints.CHECKPOINTS}: "
                  f"{st.train_command(painting_name)}")
            continue
        net = st.load_network(painting_name, root=root)
        network = checkpoints.load_metrics(name, root).get("feature_network", "unknown")
        rows, pictures = by_network.setdefault(network, ([], {}))
        for photo_name, photo in photos.items():
            with torch.inference_mode():
                start = time.perf_counter()
                image = net(photo).clamp(0, 1)
                seconds = time.perf_counter() - start
            rows.append({"photo": photo_name, "painting": painting_name, "seconds": seconds,
                         **st.measure(judge, image, photo, painting)})
            pictures[photo_name, painting_name] = st.to_pil(image)
    return by_network


def run_multi(root: Path | None, photos, paintings, judge):
    """The one network for every painting (python -m train.style_transfer --style multi)."""
    name = st.checkpoint_name(st.MULTI)
    if checkpoints.find(name, root) is None:
        print(f"no multi-style network in {root or checkpoints.CHECKPOINTS}: {st.train_command(st.MULTI)}")
        return None
    net = st.load_network(st.MULTI, root=root)
    network = checkpoints.load_metrics(name, root).get("feature_network", "unknown")
    rows, pictures = [], {}
    for painting_name, painting in paintings.items():
        k = st.PAINTINGS.index(painting_name)
        for photo_name, photo in photos.items():
            with torch.inference_mode():
                start = time.perf_counter()
                image = st.stylise(net, photo, k).clamp(0, 1)
                seconds = time.perf_counter() - start
            rows.append({"photo": photo_name, "painting": painting_name, "seconds": seconds,
                         **st.measure(judge, image, photo, painting)})
            pictures[photo_name, painting_name] = st.to_pil(image)
    return network, rows, pictures


def run_arbitrary(root: Path | None, photos, paintings, judge):
    """The AdaIN network for any painting (python -m train.style_transfer_arbitrary), each
    painting at ADAIN_STYLE_SIZE as the tab gives it."""
    name = st.checkpoint_name(st.ARBITRARY)
    if checkpoints.find(name, root) is None:
        print(f"no network for any painting in {root or checkpoints.CHECKPOINTS}: python -m train.style_transfer_arbitrary")
        return None
    net = checkpoints.load(st.AdaINNet, name, "python -m train.style_transfer_arbitrary", root=root)
    rows, pictures = [], {}
    for painting_name, painting in paintings.items():
        style = st.painting(painting_name, st.ADAIN_STYLE_SIZE)
        for photo_name, photo in photos.items():
            with torch.inference_mode():
                start = time.perf_counter()
                image = net(photo, style).clamp(0, 1)
                seconds = time.perf_counter() - start
            rows.append({"photo": photo_name, "painting": painting_name, "seconds": seconds,
                         "held_out": painting_name in st.HELD_OUT_PAINTINGS, **st.measure(judge, image, photo, painting)})
            pictures[photo_name, painting_name] = st.to_pil(image)
    return rows, pictures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["optimize", "fast", "multi", "arbitrary"],
                        choices=["optimize", "fast", "multi", "arbitrary"],
                        help="fast: a network per painting; multi: one network for all six; arbitrary: the AdaIN "
                             "network for any painting")
    parser.add_argument("--features", nargs="+", choices=list(st.FEATURE_NETWORKS),
                        help="feature networks for optimisation (default: every available one)")
    parser.add_argument("--checkpoint-dirs", nargs="+", default=[None],
                        help="where feed-forward networks are read (default: checkpoints/); several to compare "
                             "networks trained with other feature networks (train.style_transfer --features)")
    parser.add_argument("--size", type=int, default=st.MEASURE_SIZE, help="longer side of photos and paintings")
    parser.add_argument("--steps", type=int, default=60, help="optimisation steps (the tab's default)")
    parser.add_argument("--optimizer", default="adam", choices=["adam", "lbfgs"])
    parser.add_argument("--lr", type=float, help="Adam's step on the pixels (default: the feature network's)")
    parser.add_argument("--style-weight", type=float, help="default: the feature network's (FEATURE_NETWORKS)")
    parser.add_argument("--photos", type=int, default=len(st.PHOTOS), help="use the first n test photos")
    parser.add_argument("--split", choices=["test", "val"], default="test",
                        help="val: the validation photos (scikit-image's), to make a choice on; the sheets' names "
                             "end in _val and the results JSON is not touched")
    parser.add_argument("--paintings", type=int, default=len(st.PAINTINGS), help="use the first n paintings")
    parser.add_argument("--out", default=str(REPO / "docs"), help="folder for the sheets and results JSON")
    parser.add_argument("--data-dir", help="data directory (default: $DLP_DATA_DIR or data/)")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    photos = st.validation_photos(args.size) if args.split == "val" else st.test_photos(args.size, args.data_dir)
    photos = dict(list(photos.items())[:args.photos])
    suffix = "_val" if args.split == "val" else ""
    paintings = {p: st.painting(p, args.size, args.data_dir) for p in st.PAINTINGS[:args.paintings]}
    judge = st.load_feature_network("auto")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    results = [summarise("photo itself", "-", [{"photo": a, "painting": b, "seconds": 0.0,
                                                **st.measure(judge, photo, photo, painting)}
                                               for a, photo in photos.items() for b, painting in paintings.items()])]
    if "optimize" in args.methods:
        for network in args.features or st.available_feature_networks():
            rows, pictures = run_optimize(network, photos, paintings, judge, args)
            results.append(summarise("optimize", network, rows))
            contact_sheet(f"Optimisation (Gatys et al.), {args.steps} {args.optimizer} steps at {args.size} px, "
                          f"features: {network}", photos, paintings, pictures
                          ).save(out / f"style_transfer_optimize_{network}{suffix}.jpg", quality=88)
    if "fast" in args.methods:
        for root in args.checkpoint_dirs:
            for network, (rows, pictures) in run_fast(root, photos, paintings, judge).items():
                results.append(summarise("fast", network, rows))
                contact_sheet(f"Feed-forward (Johnson et al.) at {args.size} px, trained with {network}", photos,
                              paintings, pictures).save(out / f"style_transfer_fast_{network}{suffix}.jpg", quality=88)

    if "multi" in args.methods:
        for root in args.checkpoint_dirs:
            found = run_multi(root, photos, paintings, judge)
            if found:
                network, rows, pictures = found
                results.append(summarise("multi", network, rows))
                contact_sheet(f"Feed-forward, one network for every painting (conditional instance norm) at "
                              f"{args.size} px, trained with {network}", photos, paintings, pictures
                              ).save(out / f"style_transfer_multi_{network}{suffix}.jpg", quality=88)

    if "arbitrary" in args.methods:
        for root in args.checkpoint_dirs:
            found = run_arbitrary(root, photos, paintings, judge)
            if found:
                rows, pictures = found
                results.append(summarise("arbitrary", "imagenet_efficientnet", rows))
                for held_out in (False, True):
                    part = [r for r in rows if r["held_out"] == held_out]
                    if part:
                        results.append(summarise("arbitrary, " + ("held-out" if held_out else "seen") + " paintings",
                                                 "imagenet_efficientnet", part))
                contact_sheet(f"Feed-forward, one network for any painting (AdaIN, EfficientNet-Lite0 encoder) at "
                              f"{args.size} px; red: never seen in training", photos, paintings, pictures,
                              {p: "never seen in training" for p in st.HELD_OUT_PAINTINGS}
                              ).save(out / f"style_transfer_arbitrary{suffix}.jpg", quality=88)

    print(f"\nLosses measured with {st.FEATURE_NETWORKS[judge.name].label} at {args.size} px "
          f"({len(photos)} photos x {len(paintings)} paintings)")
    print(f"{'method':<32} {'feature network':<22} {'style loss':>10} {'content loss':>12} {'s / picture':>11}")
    for r in results:
        print(f"{r['method']:<32} {r['feature_network']:<22} {r['style_loss']:>10.3f} {r['content_loss']:>12.3f} "
              f"{r['seconds_per_picture']:>11.3f}")
    summary = {"measured_with": judge.name, "size": args.size, "steps": args.steps, "optimizer": args.optimizer,
               "results": results}
    if args.split == "val":
        return results
    path = out / "style_transfer_results.json"
    if path.exists():  # keep the rows of methods not rerun now, if they were measured the same way
        before = json.loads(path.read_text())
        if all(before.get(k) == summary[k] for k in ("measured_with", "size", "steps", "optimizer")):
            rerun = {(r["method"], r["feature_network"]) for r in results}
            summary["results"] += [r for r in before["results"] if (r["method"], r["feature_network"]) not in rerun]
    path.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps([{k: v for k, v in r.items() if k != "per_pair"} for r in results]))


if __name__ == "__main__":
    main()
