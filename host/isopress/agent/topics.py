"""MQTT topic names of one press (documented in docs/mqtt.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["OPERATOR_PATTERN", "PressTopics", "parse_command_topic"]

# The operator segment is what the broker's ACL ties to the authenticated user; keep it a
# plain name so that it is safe in topics, logs and folder-free run records.
OPERATOR_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")

# Wildcards cannot be published to; NUL is not allowed in a topic.
_BAD_TOPIC_CHARS = frozenset("+#\0")


@dataclass(frozen=True, slots=True)
class PressTopics:
    """Every topic under ``isopress/<press_id>/``."""

    press_id: str

    @property
    def base(self) -> str:
        """``isopress/<press_id>``."""
        return f"isopress/{self.press_id}"

    @property
    def status(self) -> str:
        """Retained ``online``/``offline`` (the last will says ``offline``)."""
        return f"{self.base}/status"

    @property
    def state(self) -> str:
        """Retained machine state, run, recipe, faults, versions."""
        return f"{self.base}/state"

    @property
    def telemetry(self) -> str:
        """Telemetry batches, QoS 1."""
        return f"{self.base}/telemetry"

    @property
    def event(self) -> str:
        """Board and agent events, QoS 1."""
        return f"{self.base}/event"

    def run(self, run_id: str) -> str:
        """Retained run summary."""
        return f"{self.base}/run/{run_id}"

    @property
    def command_filter(self) -> str:
        """What the agent subscribes to: ``cmd/<operator>/<verb>``."""
        return f"{self.base}/cmd/+/+"

    def command(self, operator: str, verb: str) -> str:
        """A command topic."""
        return f"{self.base}/cmd/{operator}/{verb}"

    def fallback_reply(self, operator: str) -> str:
        """Where replies go when a command names no usable MQTT 5 response topic."""
        return f"{self.base}/reply/{operator}"

    def reply_topic(self, operator: str, response_topic: str | None) -> str:
        """Where the reply to ``operator``'s command goes.

        Its response topic when that lies in ``reply/<operator>`` (the topic itself or
        below it), else :meth:`fallback_reply`: the agent never publishes a reply where
        another operator reads (nor, through the broker's ACL, anywhere else), so a
        response topic cannot make it speak for someone.
        """
        own = self.fallback_reply(operator)
        if response_topic is None:
            return own
        inside = response_topic == own or response_topic.startswith(own + "/")
        if inside and not _BAD_TOPIC_CHARS.intersection(response_topic) and len(response_topic) <= 1024:
            return response_topic
        return own


def parse_command_topic(topics: PressTopics, topic: str) -> tuple[str, str] | None:
    """``(operator, verb)`` of a command topic of this press, or None."""
    prefix = f"{topics.base}/cmd/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]
