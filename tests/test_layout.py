"""The layout's rules, checked on the source: which packages may import which, every slice
describes itself, and the README's numbers link to the docs that explain them."""
import ast
import importlib
import re

import pytest

from app import TABS
from core.data import REPO

# The two live-training labs may call one public function of their train script each.
LAB_CALLS = {"demos/cifar10.py": "train.cifar10_study", "demos/transfer.py": "train.transfer"}


def imports(path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import statement in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def python_files(folder: str):
    return sorted((REPO / folder).glob("*.py"))


def test_demos_import_only_models_and_core():
    for path in python_files("demos"):
        where = str(path.relative_to(REPO))
        for module, names in imports(path):
            top = module.split(".")[0]
            if top == "train":
                assert LAB_CALLS.get(where) == module and len(names) == 1, (where, module, names)
            if top == "demos" and where != "demos/overview.py":
                assert module.startswith("demos.examples"), (where, module)  # no demo imports another demo


@pytest.mark.parametrize("folder", ["train", "models", "core"])
def test_no_gradio_outside_the_tabs(folder):
    allowed = {"core/ui.py", "core/sessions.py", "core/gpu.py", "core/links.py"}
    for path in python_files(folder):
        if str(path.relative_to(REPO)) in allowed:
            continue
        for module, _ in imports(path):
            assert module.split(".")[0] not in ("gradio", "gradio_client", "demos"), (path, module)


def test_models_do_not_import_training_scripts():
    for path in python_files("models"):
        for module, _ in imports(path):
            assert module.split(".")[0] != "train", (path, module)


def test_every_tab_describes_itself():
    for tab in TABS:
        module = importlib.import_module(f"demos.{tab}")
        assert isinstance(module.TITLE, str) and callable(module.build)
        if tab != "overview":
            assert module.OVERVIEW.title and module.OVERVIEW.command.startswith("python -m train.")
            assert callable(module.thumbnail)
            assert (REPO / "docs" / f"{tab}.md").exists(), tab
            assert (REPO / "tests" / f"test_{tab}.py").exists(), tab


def test_every_slice_names_its_checkpoints_one_way():
    for tab in list(TABS)[1:]:
        model = importlib.import_module(f"models.{tab}")
        assert callable(model.checkpoint_name) and callable(model.train_command), tab
        assert not hasattr(model, "NAME") and not hasattr(model, "COMMAND"), tab


def test_readme_is_short_and_its_numbers_link_to_the_docs():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    table = [line for line in readme.splitlines() if line.startswith("| ") and not line.startswith("| Tab")]
    assert len(table) == len(TABS) - 1
    for row in table:
        measured = row.split(" | ")[-1]
        unlinked = re.sub(r"\[[^\]]*\]\([^)]*\)", "", measured)
        assert unlinked != measured, row  # at least one linked number
        # a measured number (a decimal or a percentage) outside a link may only be a target or mAP@0.5
        for match in re.finditer(r"-?\d+\.\d+%?|\d+%", unlinked):
            assert re.search(r"(target |@)$", unlinked[:match.start()]), (match.group(), row)
    for text, target in re.findall(r"\[([^\]]+)\]\(([^)#]+)\)", readme):
        assert (REPO / target).exists(), target
        if target.startswith("docs/") and target.endswith(".md") and re.match(r"-?[\d.]+", text):
            page = (REPO / target).read_text()
            assert text.rstrip("%").replace(" nats", "").replace(" ms", "") in page, (text, target)


def test_docs_links_resolve():
    for page in sorted((REPO / "docs").glob("*.md")):
        for target in re.findall(r"\]\(([^)#\s]+)\)", page.read_text()):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), (page.name, target)
