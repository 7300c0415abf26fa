"""Training that a tab runs live (the CIFAR-10 lab, transfer learning's live run): one at a
time in this process, in a thread of its own, stopped within a step.

Gradio runs a generator handler in a worker thread it cannot interrupt and cancels it only
between two of its yields: a lab that yielded once an epoch answered Stop after a minute, and
its thread trained on after Gradio had freed the slot (four trainings ran under a limit of
one). So the training runs in a thread of its own that holds LOCK and checks its run's stop
flag every step, while the handler only watches it and yields four times a second: a Stop or
a client that left closes the handler at once, and its `finally` sets the flag. A client that
asked for a run and never reads its stream (an API call fired and forgotten) does not close
it, so the run is also stopped once its messages have gone unread for UNREAD_S.
"""
import threading
import time
from dataclasses import dataclass, field

from core.errors import BadInput

LOCK = threading.Lock()  # one live training in this process at a time, whichever tab (2 CPU cores)
WAIT_S = 30  # a new run waits this long for a stopped one to end its step (or its evaluation)
HEARTBEAT_S = 0.25
FORGET_S = 600  # a session's ended run is kept this long, for its Stop button's answer
UNREAD_S = 30  # a run whose stream nobody has read for this long is stopped


@dataclass
class Run:
    session: str | None  # whose Stop may stop it
    epochs: int
    limit_s: float  # on a shared server a run ends after this long
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    history: list = field(default_factory=list)  # what the training yielded last
    error: BaseException | None = None
    started: float = field(default_factory=time.monotonic)
    ended: float = 0.0
    batches: list = field(default_factory=list)  # a point per training batch, for curves that move every few
    paused: bool = False
    steps_allowed: int = 0  # batches Step lets through while paused
    holding: bool = False  # paused and waiting between two batches now

    def should_stop(self) -> bool:
        """Asked by the training after every batch: True ends it. While paused it waits here
        (between two batches) until Resume, Step (one more batch) or Stop; the time limit
        counts paused time too, so a forgotten pause still ends."""
        while self.paused and not self.steps_allowed and not self._over():
            self.holding = True
            self.stop.wait(0.05)
        self.holding = False
        if self.steps_allowed:
            self.steps_allowed -= 1
        return self._over()

    def _over(self) -> bool:
        return self.stop.is_set() or time.monotonic() - self.started > self.limit_s

    def pause(self) -> None:
        self.paused, self.steps_allowed = True, 0

    def step(self) -> None:
        """Paused: train one more batch, then pause again."""
        self.paused, self.steps_allowed = True, 1

    def resume(self) -> None:
        self.paused, self.steps_allowed = False, 0

    def timed_out(self) -> bool:
        return self.done.is_set() and not self.stop.is_set() and self.ended - self.started > self.limit_s

    def end(self) -> None:
        self.ended = time.monotonic()
        self.done.set()


class Lab:
    """One tab's live trainings: each session's latest run, so its Stop stops its own."""

    def __init__(self, limit_s: float, busy: str):
        self.limit_s, self.busy = limit_s, busy
        self.runs: dict = {}

    def new_run(self, session: str | None, epochs: int) -> Run:
        for key, old in list(self.runs.items()):
            if old.done.is_set() and time.monotonic() - old.ended > FORGET_S:
                self.runs.pop(key, None)
        run = self.runs[session] = Run(session, int(epochs), self.limit_s)
        return run

    def stop(self, session: str | None) -> Run | None:
        """Stop this session's run; wait half a second so the answer can usually say "stopped"."""
        run = self.runs.get(session)
        if run is not None:
            run.stop.set()
            run.done.wait(0.5)
        return run

    def watch(self, run: Run, training, request=None):
        """Start `training` (a generator that checks run.should_stop every step) in a thread of
        its own once LOCK is free; yields False while it waits for the lock, True while it
        trains, then re-raises its error. Closing this generator stops the training, and so
        does nobody reading what it yields (see unread_messages) for UNREAD_S."""
        started = False
        try:
            waited = 0.0
            while not LOCK.acquire(timeout=HEARTBEAT_S):
                waited += HEARTBEAT_S
                if run.stop.is_set():
                    return
                if waited >= WAIT_S:
                    raise BadInput(self.busy)
                yield False
            try:
                threading.Thread(target=_train, args=(run, training), name="lab", daemon=True).start()
            except BaseException:
                LOCK.release()
                raise
            started = True
            while not run.done.wait(HEARTBEAT_S):
                unread = unread_messages(request)
                if unread is not None and unread * HEARTBEAT_S > UNREAD_S:
                    run.stop.set()
                    run.done.wait()
                    return
                yield True
        finally:
            if not run.done.is_set():
                run.stop.set()
            if not started:
                run.end()
        if run.error is not None:
            raise run.error


def unread_messages(request) -> int | None:
    """How many of this Gradio session's stream messages are waiting unread (None: unknown,
    e.g. a direct call). A browser or gradio_client reads them as they come; they pile up
    only when nobody listens. Gradio has no public API for this: its queue's per-session
    message buffer is read, and any change there gives None (the run then ends only at
    its time limit, as before)."""
    try:
        queue = request.request.app.get_blocks()._queue.pending_messages_per_session.get(request.session_hash)
        return None if queue is None else int(queue.qsize())
    except Exception:
        return None


def _train(run: Run, training) -> None:
    try:
        for history in training:
            run.history = list(history)
    except BaseException as e:
        run.error = e
    finally:
        LOCK.release()  # only now: the training has really ended
        run.end()
