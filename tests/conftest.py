import os

# No network here or in CI: never wait for the Hub, never phone home.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def pytest_addoption(parser):
    parser.addoption("--screenshots", metavar="DIR", default=None,
                     help="tests/test_browser.py: save a screenshot of every tab to DIR "
                          "(the README's: docs/screenshots)")
