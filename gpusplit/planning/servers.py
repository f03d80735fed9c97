"""What serving several users gives (planning/serving.py computes it): each llama-server's share
of the users and their speed, and one server weighed against replicas. Plain values, below the
planner, which carries them in a Plan."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Server:
    """One llama-server: the devices its model is on, its slots, the users it gets, what they get
    together and each, and the command that starts it."""

    devices: tuple[str, ...]
    slots: int
    users: int
    tokens_per_s: float | None  # all its users' generation together
    per_user_tokens_per_s: float | None
    first_token_s: float | None  # a user arriving while the others decode: its prompt's batch
    command: tuple[str, ...]


@dataclass(frozen=True)
class Serving:
    """N users on the plan's one server, and on replicas where two or more devices each hold the
    model alone; which serves them faster together, and by how much."""

    users: int
    depth: int  # the context each user is taken to be at: half a slot
    prompt_tokens: int  # a newly arriving user's prompt
    server: Server
    replicas: tuple[Server, ...]  # empty: fewer than two devices hold the model alone

    @property
    def replicas_tokens_per_s(self) -> float | None:
        speeds = [r.tokens_per_s for r in self.replicas]
        return sum(s for s in speeds if s) if self.replicas and all(speeds) else None

    @property
    def winner(self) -> str:
        """ "replicas" where they are predicted faster for all users together, else "one-server"."""
        together = self.replicas_tokens_per_s
        return "replicas" if together and self.server.tokens_per_s and together > self.server.tokens_per_s else "one-server"

    @property
    def ratio(self) -> float | None:
        """The winner's speed over the other's (None where there is nothing to weigh)."""
        together, one = self.replicas_tokens_per_s, self.server.tokens_per_s
        if not together or not one:
            return None
        return max(together, one) / min(together, one)
