"""Where messages wait between the broker and the writer: one queue per agent, taken in turn.

With a single first-in-first-out queue, an agent that floods the broker (a buggy box, a leaked
account) would push every other agent's messages back behind its own. Here each agent has its
own queue of at most ``share`` messages, and the writer takes one message of each waiting agent
in turn, so an agent's message waits behind at most one message of each other agent per group.
A message beyond an agent's share is dropped and counted: a real agent never has that many
unacknowledged (its in-flight window is a few batches) and sends again what is not acknowledged.

Thread-safe: the network thread puts, the writer thread takes.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class FairInbox(Generic[T]):
    def __init__(self, share: int) -> None:
        self.share = share
        self._queues: dict[str, collections.deque[T]] = {}
        #: Agents with something waiting, in the order they are served.
        self._turns: collections.deque[str] = collections.deque()
        self._dropped: collections.Counter[str] = collections.Counter()
        self._ready = threading.Condition()

    def put(self, agent: str, item: T) -> bool:
        """Queue ``item`` of ``agent``; False (and counted) when the agent is over its share."""
        with self._ready:
            queue = self._queues.get(agent)
            if queue is None:
                queue = self._queues[agent] = collections.deque()
            if len(queue) >= self.share:
                self._dropped[agent] += 1
                return False
            if not queue:
                self._turns.append(agent)
            queue.append(item)
            self._ready.notify()
            return True

    def take(self, most: int, timeout: float) -> list[T]:
        """Up to ``most`` items, one per agent in turn; waits up to ``timeout`` for the first."""
        deadline = time.monotonic() + timeout
        with self._ready:
            while not self._turns:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._ready.wait(left)
            taken: list[T] = []
            while self._turns and len(taken) < most:
                agent = self._turns.popleft()
                queue = self._queues[agent]
                taken.append(queue.popleft())
                if queue:
                    self._turns.append(agent)
                else:
                    del self._queues[agent]
            return taken

    def dropped(self) -> dict[str, int]:
        """Messages dropped per agent since the last call."""
        with self._ready:
            out = dict(self._dropped)
            self._dropped.clear()
            return out

    def __len__(self) -> int:
        with self._ready:
            return sum(len(q) for q in self._queues.values())
