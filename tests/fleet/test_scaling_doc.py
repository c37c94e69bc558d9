"""docs/scaling.md's Telegraf mapping is the telemetry schema's: topic, object path,
timestamp key, every sample field with its type, the press_id tag."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

_TYPES = {"integer": "int", "number": "float", "string": "string", "boolean": "bool"}


def _telegraf_config(doc: str) -> dict[str, Any]:
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.DOTALL)
    configs = [tomllib.loads(b) for b in blocks if "mqtt_consumer" in b]
    assert len(configs) == 1, "docs/scaling.md should hold one Telegraf mqtt_consumer block"
    return configs[0]


def _schema(repo_root: Path) -> dict[str, Any]:
    return json.loads((repo_root / "docs" / "schemas" / "telemetry.schema.json").read_text())


def test_the_telegraf_config_maps_every_sample_field_with_the_schemas_type(repo_root: Path) -> None:
    schema = _schema(repo_root)
    consumer = _telegraf_config((repo_root / "docs" / "scaling.md").read_text())["inputs"]["mqtt_consumer"][0]
    assert consumer["topics"] == [schema["x-topic"].replace("<press_id>", "+")]
    assert consumer["qos"] == 1 and consumer["data_format"] == "json_v2"
    parser = consumer["json_v2"][0]
    assert [t["path"] for t in parser["tag"]] == ["press_id"] and "press_id" in schema["required"]
    (obj,) = parser["object"]
    assert obj["path"] == "samples" and schema["properties"]["samples"]["type"] == "array"
    sample = schema["$defs"]["TelemetrySample"]["properties"]
    assert obj["timestamp_key"] == "wall_time" and sample["wall_time"]["format"] == "date-time"
    assert obj["timestamp_format"] == "rfc3339nano" and obj["timestamp_timezone"] == "UTC"
    expected = {name: _TYPES[p["type"]] for name, p in sample.items() if name != "wall_time"}
    assert obj["fields"] == expected


def test_the_mapping_table_names_every_schema_field(repo_root: Path) -> None:
    doc = (repo_root / "docs" / "scaling.md").read_text()
    table = doc[doc.index("| point | from | type |") :].split("\n\n", 1)[0]
    named = set(re.findall(r"`([a-z_]+)`", table))
    sample = _schema(repo_root)["$defs"]["TelemetrySample"]["properties"]
    assert set(sample) | {"press_id"} <= named, set(sample) - named
