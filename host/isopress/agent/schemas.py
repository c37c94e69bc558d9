"""JSON Schemas of the MQTT payloads, generated from the pydantic models into ``docs/schemas/``.

``python -m isopress.agent.schemas`` rewrites them; ``--check`` exits 1 when the checked-in
files differ from the models (a test runs the same comparison).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ..paths import repo_root
from .payloads import (
    AbortCommand,
    CommandReply,
    EventPayload,
    LoadRecipeCommand,
    PauseCommand,
    ResetCommand,
    ResumeCommand,
    RunSummary,
    StartCommand,
    StatePayload,
    TelemetryBatch,
)

__all__ = ["SCHEMAS", "render_schemas", "schema_folder"]

# file stem -> (model, direction the agent sees it in, topic)
SCHEMAS: dict[str, tuple[type[BaseModel], Literal["validation", "serialization"], str]] = {
    "telemetry": (TelemetryBatch, "serialization", "isopress/<press_id>/telemetry"),
    "event": (EventPayload, "serialization", "isopress/<press_id>/event"),
    "state": (StatePayload, "serialization", "isopress/<press_id>/state"),
    "run-summary": (RunSummary, "serialization", "isopress/<press_id>/run/<run_id>"),
    "command-load-recipe": (
        LoadRecipeCommand,
        "validation",
        "isopress/<press_id>/cmd/<operator>/load-recipe",
    ),
    "command-start": (StartCommand, "validation", "isopress/<press_id>/cmd/<operator>/start"),
    "command-pause": (PauseCommand, "validation", "isopress/<press_id>/cmd/<operator>/pause"),
    "command-resume": (ResumeCommand, "validation", "isopress/<press_id>/cmd/<operator>/resume"),
    "command-abort": (AbortCommand, "validation", "isopress/<press_id>/cmd/<operator>/abort"),
    "command-reset": (ResetCommand, "validation", "isopress/<press_id>/cmd/<operator>/reset"),
    "command-reply": (CommandReply, "serialization", "the command's MQTT 5 response topic"),
}


def schema_folder() -> Path:
    """``docs/schemas`` of the checkout."""
    return repo_root() / "docs" / "schemas"


def render_schemas() -> dict[str, str]:
    """File name -> JSON text, for every payload."""
    out: dict[str, str] = {}
    for stem, (model, mode, topic) in SCHEMAS.items():
        schema: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"isopress/{stem}.schema.json",
            "x-topic": topic,
            **model.model_json_schema(mode=mode),
        }
        out[f"{stem}.schema.json"] = json.dumps(schema, indent=2, sort_keys=False) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the schema files."""
    args = sys.argv[1:] if argv is None else argv
    folder = schema_folder()
    rendered = render_schemas()
    if "--check" in args:
        stale = [
            name
            for name, text in rendered.items()
            if not (folder / name).exists() or (folder / name).read_text() != text
        ]
        extra = sorted(p.name for p in folder.glob("*.schema.json") if p.name not in rendered)
        for name in stale:
            print(
                f"{folder / name}: differs from the model; run python -m isopress.agent.schemas",
                file=sys.stderr,
            )
        for name in extra:
            print(f"{folder / name}: no model produces it any more", file=sys.stderr)
        return 1 if stale or extra else 0
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (folder / name).write_text(text)
    print(f"wrote {len(rendered)} schemas to {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
