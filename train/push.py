"""Upload the checkpoints to a Hugging Face Hub model repo, and optionally the app to a Space.

    python -m train.push --repo you/dlp-checkpoints --dry-run      # what would go, and how big
    python -m train.push --repo you/dlp-checkpoints                # every checkpoint; prints the commit
    python -m train.push --repo you/dlp-checkpoints --only gan/dcgan mnist
    python -m train.push --repo you/dlp-checkpoints --space you/deep-learning-playground

The app looks for a checkpoint missing from checkpoints/ in the model repo named by
$DLP_HUB_REPO, at revision $DLP_HUB_REVISION (core/checkpoints.py). Pin that to the commit
printed here, so that a later push never changes what a running Space serves. With --space
the app's code goes to that Space and both variables are set on it; --space without --repo
commits the checkpoints into the Space itself instead. The token is $HF_TOKEN or the one
`hf auth login` saved.
"""
import argparse
import re
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.utils import filter_repo_objects

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "checkpoints"  # core.checkpoints.CHECKPOINTS, without importing torch

# What the demos read from a checkpoint folder: weights and their extras (timelapse, mistakes,
# test_set), config/metrics/vocab JSON, sentencepiece tokenizers (*.model). Never resume/:
# large, git-ignored, and only an interrupted training run reads it.
CHECKPOINT_FILES = ["*.safetensors", "*.json", "*.model"]
NEVER = ["resume/*", "*/resume/*", "*__pycache__*", "*.pyc"]
# The app's code, as a Space runs it: train/ goes too, because the two live-training labs call
# their train scripts; docs/ because the README (the Space's front page) links to it.
SPACE_FILES = ["app.py", "requirements.txt", "README.md", "core/*.py", "demos/*", "models/*.py", "train/*.py", "docs/*"]


def space_sdk() -> str:
    """The Space's SDK as the README's front matter (the Space's configuration) names it."""
    front_matter = (REPO / "README.md").read_text().split("---")[1]
    return re.search(r"^sdk:\s*(\S+)", front_matter, re.M).group(1)


def checkpoint_patterns(only=None) -> list[str]:
    """allow_patterns for every checkpoint, or only for the folders in `only` (e.g. gan/dcgan)."""
    if not only:
        return list(CHECKPOINT_FILES)
    return [f"{name.strip('/')}/{pattern}" for name in only for pattern in CHECKPOINT_FILES]


def space_patterns(with_checkpoints: bool, only=None) -> list[str]:
    extra = [f"checkpoints/{p}" for p in checkpoint_patterns(only)] if with_checkpoints else []
    return SPACE_FILES + extra


def selection(root: Path, patterns: list[str]) -> list[str]:
    """The files under `root` that upload_folder(allow_patterns=patterns, ignore_patterns=NEVER)
    sends (the same filter it applies), as paths relative to root."""
    files = sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())
    return list(filter_repo_objects(files, allow_patterns=patterns, ignore_patterns=NEVER))


def size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} B"


def show(title: str, root: Path, files: list[str]) -> None:
    sizes = [(root / f).stat().st_size for f in files]
    print(f"{title}: {len(files)} files, {size(sum(sizes))}")
    for f, n in zip(files, sizes):
        print(f"  {f}  {size(n)}")


def push_checkpoints(api: HfApi, repo: str, branch: str, private: bool, root: Path, patterns) -> str:
    """Commit the selected checkpoint files to model repo `repo`; returns the commit hash."""
    api.create_repo(repo, private=private, exist_ok=True)
    if branch != "main":
        api.create_branch(repo, branch=branch, exist_ok=True)
    info = api.upload_folder(repo_id=repo, folder_path=root, revision=branch, allow_patterns=patterns,
                             ignore_patterns=list(NEVER),  # upload_folder appends to the list it gets
                             commit_message="Upload checkpoints with python -m train.push")
    return info.oid


def push_space(api: HfApi, space: str, private: bool, patterns) -> str:
    """Commit the app to Space `space`; files it no longer has are deleted there."""
    api.create_repo(space, repo_type="space", space_sdk=space_sdk(), private=private, exist_ok=True)
    info = api.upload_folder(repo_id=space, repo_type="space", folder_path=REPO, allow_patterns=patterns,
                             ignore_patterns=list(NEVER), delete_patterns=patterns,
                             commit_message="Upload the app with python -m train.push")
    return info.oid


def main(argv=None):
    parser = argparse.ArgumentParser(description="Upload checkpoints to a Hugging Face Hub model repo "
                                                 "(and the app to a Space).")
    parser.add_argument("--repo", help="model repo for the checkpoints, user/name (created if missing)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="upload only these checkpoint folders, e.g. --only gan/dcgan mnist")
    parser.add_argument("--branch", "--revision", dest="branch", default="main",
                        help="branch of --repo to commit to (created from main if missing)")
    parser.add_argument("--private", action="store_true",
                        help="create the repos private (a Space then needs an HF_TOKEN secret to read them)")
    parser.add_argument("--space", help="also upload the app to this Space, user/name, and point it at --repo")
    parser.add_argument("--checkpoint-dir", help="folder to upload to --repo (default: checkpoints/)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list what would be uploaded and its size, upload nothing")
    args = parser.parse_args(argv)
    root = Path(args.checkpoint_dir or CHECKPOINTS)
    if not (args.repo or args.space or args.dry_run):
        parser.error("give --repo and/or --space (or --dry-run to see what would be uploaded)")
    if args.space and not args.repo and args.checkpoint_dir:
        parser.error("a Space gets the checkpoints in checkpoints/; --checkpoint-dir goes with --repo")
    for name in args.only or []:
        if not selection(root, checkpoint_patterns([name])):
            parser.error(f"no checkpoint files in {root / name}")
    if not args.dry_run and get_token() is None:
        parser.error("no Hugging Face token: run `hf auth login` or set HF_TOKEN")

    api, commit = HfApi(), None
    if args.repo or not args.space:
        patterns = checkpoint_patterns(args.only)
        show(f"checkpoints for {args.repo or '--repo'} ({args.branch})", root, selection(root, patterns))
        if args.repo and not args.dry_run:
            commit = push_checkpoints(api, args.repo, args.branch, args.private, root, patterns)
            print(f"\nCommitted {commit} to {api.endpoint}/{args.repo}/tree/{args.branch}. Pin it where the app runs:\n"
                  f"  DLP_HUB_REPO={args.repo} DLP_HUB_REVISION={commit}")
    if args.space:
        patterns = space_patterns(with_checkpoints=not args.repo, only=args.only)
        show(f"app for Space {args.space}", REPO, selection(REPO, patterns))
        if not args.dry_run:
            space_commit = push_space(api, args.space, args.private, patterns)
            print(f"\nCommitted {space_commit} to {api.endpoint}/spaces/{args.space}")
            if args.repo:
                api.add_space_variable(args.space, "DLP_HUB_REPO", args.repo)
                api.add_space_variable(args.space, "DLP_HUB_REVISION", commit)
                print(f"Set DLP_HUB_REPO={args.repo} and DLP_HUB_REVISION={commit} on the Space.")
                if args.private:
                    print("The model repo is private: add a read token as the Space secret HF_TOKEN.")


if __name__ == "__main__":
    main()
