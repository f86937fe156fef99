"""A Loader over several origins: a master, then secondaries in parallel (issue 13).

A reference is the path of a path URL (paths.normalise_path); each origin is a base
URL it is joined under (paths.join). The master is asked first. When it answers
404/410, fails, or has not answered within `hedge_seconds`, every secondary is asked
at once; a master that is merely slow is still waited for, and the first good image
from any origin wins. The others are then cancelled.

Outcomes, counted once per origin asked as `count(origin_base, outcome)`:

    ok            it served the image (the winner)
    not_modified  it answered 304 to a conditional request (the master only, see below)
    not_found     it answered 404 or 410
    failed        any other failure: 5xx, refused or reset, a bad redirect, an address or
                  host the fetcher refused (403), a source too large (413)
    timeout       the fetcher's timeout passed
    cancelled     another origin won first (or the caller gave up)

and `count("*", "fallback")` once per load that asked the secondaries.

What the load answers (errors.py's constructors; all keep fetch code 301):

- every origin asked said 404/410: 404 (source_not_found)
- else any origin timed out: 504 (origin_timeout)
- else: 502 (origin_failed)
- an origin said the source is too large (413): that 413 at once, asking no more
  origins and cancelling the rest; a source too large is too large everywhere.

The reason names how many origins were asked, not which: origin addresses are the
operator's and stay in the log.

With `validators` (a cache asking "changed?"), only the master gets the conditional
request; its 304 is a win like a 200 and the load answers None. Secondaries, when
asked, are asked unconditionally (validators may come from another origin's copy), so
a fallback answers a full Source even when nothing changed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from .. import errors
from ..errors import ProxyError
from . import Loader, Source, Validators
from .paths import check_base, join

log = logging.getLogger("imgproxy.sources.origins")

# One origin's answer: (outcome, source, error). source is None for "not_modified".
_Answer = tuple[str, Source | None, ProxyError | None]


class OriginsLoader:
    def __init__(self, origins: tuple[str, ...], fetch: Loader, hedge_seconds: float,
                 count: Callable[[str, str], None] | None = None):
        if not origins:
            raise ValueError("OriginsLoader needs at least one origin")
        self.origins = tuple(check_base(o) for o in origins)
        self.fetch = fetch
        self.hedge_seconds = hedge_seconds
        self._count = count or (lambda origin, outcome: None)

    def close(self) -> None:
        self.fetch.close()

    async def load(self, ref: str, validators: Validators | None = None) -> Source | None:
        master, *secondaries = self.origins
        urls = {base: join(base, ref) for base in self.origins}  # a 400 here asks nobody
        tasks: dict[asyncio.Task, str] = {}
        answers: list[_Answer] = []
        try:
            first = asyncio.create_task(self._ask(master, urls[master], validators or None))
            tasks[first] = master
            done, _ = await asyncio.wait({first}, timeout=self.hedge_seconds)
            if done:
                won = self._settle(first, answers)
                if won is not None or not secondaries:
                    return self._result(won, answers)
            if secondaries:
                self._count("*", "fallback")
                for base in secondaries:
                    tasks[asyncio.create_task(self._ask(base, urls[base], None))] = base
            pending = {t for t in tasks if not t.done()}
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    won = self._settle(task, answers)
                    if won is not None:
                        return self._result(won, answers)
            return self._result(None, answers)
        finally:
            for task in tasks:
                task.cancel()  # counted "cancelled" by _ask; the fetch itself is dropped

    def _settle(self, task: asyncio.Task, answers: list[_Answer]) -> _Answer | None:
        """Record a finished origin's answer; the answer when it ends the load."""
        answer = task.result()
        answers.append(answer)
        outcome, _, error = answer
        if outcome in ("ok", "not_modified") or (error is not None and error.status == 413):
            return answer
        return None

    def _result(self, won: _Answer | None, answers: list[_Answer]) -> Source | None:
        if won is not None:
            outcome, source, error = won
            if error is not None:
                raise error  # too large: the same everywhere
            return source
        outcomes = [a[0] for a in answers]
        asked = f"{len(answers)} origin{'s' if len(answers) != 1 else ''}"
        if all(o == "not_found" for o in outcomes):
            raise errors.source_not_found(f"Source not found on any origin ({asked} asked)")
        if "timeout" in outcomes:
            raise errors.origin_timeout(f"No origin served the source in time ({asked} asked)")
        raise errors.origin_failed(f"No origin could serve the source ({asked} asked)")

    async def _ask(self, base: str, url: str, validators: Validators | None) -> _Answer:
        """One origin's answer, never an exception but cancellation."""
        try:
            source = await self.fetch.load(url, validators)
        except asyncio.CancelledError:
            self._count(base, "cancelled")
            raise
        except ProxyError as e:
            outcome = {404: "not_found", 504: "timeout"}.get(e.status, "failed")
            log.info("origin %s: %s for %s (%s)", base, outcome, url, e.reason)
            self._count(base, outcome)
            return outcome, None, e
        except Exception as e:  # a bug or a surprise in one origin's fetch fails that origin only
            log.exception("origin %s: unexpected failure for %s", base, url)
            self._count(base, "failed")
            return "failed", None, errors.origin_failed(f"Cannot fetch the source ({type(e).__name__})")
        outcome = "ok" if source is not None else "not_modified"
        self._count(base, outcome)
        return outcome, source, None
