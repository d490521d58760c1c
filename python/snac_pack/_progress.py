"""Progress of a run, drawn where the user is looking: a tqdm bar (a widget
in Jupyter, text in a terminal) when tqdm is installed, else one line per
trial; messages from the engine go to ``sys.stderr`` with their prefix."""

from __future__ import annotations

import json
import sys
from typing import Any, Optional


class Progress:
    """Receives the engine's events (JSON text) while a run goes on."""

    def __init__(self, show: bool = True) -> None:
        self.show = show
        self.bar: Optional[Any] = None
        self.messages: list[dict] = []
        self.trials: list[dict] = []

    def __call__(self, text: str) -> None:
        event = json.loads(text)
        kind = event.get("kind")
        if kind == "message":
            self.messages.append(event)
            if self.show or event["level"] in ("warn", "error"):
                self._write(event["line"])
        elif kind == "search_started":
            self._start(event["total"], event.get("best", ""))
        elif kind == "trial":
            self.trials.append(event)
            self._trial(event)
        elif kind == "search_finished" and self.bar is not None:
            self.bar.close()
            self.bar = None

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def _start(self, total: int, best: str) -> None:
        if not self.show:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self._write(f"global search: {total} trials to run")
            return
        self.bar = tqdm(total=total, unit="trial", desc="global search", file=sys.stderr)
        if best:
            self.bar.set_postfix_str(best, refresh=False)

    def _trial(self, event: dict) -> None:
        if not self.show:
            return
        if self.bar is None:
            self._write(event["line"])
            return
        if event["state"] != "COMPLETE":
            self._write(event["line"])
        if event.get("best"):
            self.bar.set_postfix_str(event["best"], refresh=False)
        self.bar.update(1)
