"""What an experiment shows on the Overview: its headline numbers, read from its
checkpoints' metrics.json (never typed in), beside what its seed reported.

Each demos/<exp>.py exports `OVERVIEW = Entry(...)` and `thumbnail()`; demos/overview.py
loops over app.TABS and reads them."""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Figure:
    """One number of a checkpoint's metrics.json: `key` is a dotted path into it."""
    label: str
    checkpoint: str
    key: str
    fmt: str = "{:.2%}"


@dataclass(frozen=True)
class Entry:
    title: str
    issue: int  # the issue that asked for the experiment
    command: str  # what trains its checkpoints
    ours: list[Figure]
    seed: list[str | Figure] = field(default_factory=list)  # the seed's result: the issue's words, or numbers from the metrics
    where: str = ""  # what our numbers were measured on


def lookup(metrics: dict, key: str):
    """metrics["a"]["b"] for key "a.b"; None when any part is missing."""
    value = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
