"""A small offline MCP server shipped as a demo downstream: text and unit helpers.

python examples/toolbox_server.py          (stdio)
"""

from __future__ import annotations

import re
import unicodedata

from mcp.server.mcpserver import MCPServer

server = MCPServer(name="toolbox", version="1.0.0", log_level="WARNING")


@server.tool(description="Count the words, lines and characters of a text.")
def word_count(text: str) -> dict:
    return {"words": len(text.split()), "lines": len(text.splitlines()) or 1, "characters": len(text)}


@server.tool(description="Turn a title into a URL slug (lowercase ASCII words joined by hyphens).")
def slugify(title: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


@server.tool(description="Convert a temperature between celsius, fahrenheit and kelvin.")
def convert_temperature(value: float, from_unit: str, to_unit: str) -> float:
    to_celsius = {"celsius": lambda v: v, "fahrenheit": lambda v: (v - 32) * 5 / 9, "kelvin": lambda v: v - 273.15}
    from_celsius = {"celsius": lambda v: v, "fahrenheit": lambda v: v * 9 / 5 + 32, "kelvin": lambda v: v + 273.15}
    try:
        return round(from_celsius[to_unit.lower()](to_celsius[from_unit.lower()](value)), 4)
    except KeyError:
        raise ValueError("units must be celsius, fahrenheit or kelvin") from None


@server.tool(description="Convert a length between metres, kilometres, miles, feet and inches.")
def convert_length(value: float, from_unit: str, to_unit: str) -> float:
    metres = {"metres": 1.0, "kilometres": 1000.0, "miles": 1609.344, "feet": 0.3048, "inches": 0.0254}
    try:
        return round(value * metres[from_unit.lower()] / metres[to_unit.lower()], 6)
    except KeyError:
        raise ValueError(f"units must be one of {', '.join(metres)}") from None


if __name__ == "__main__":
    server.run("stdio")
