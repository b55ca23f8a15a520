"""The API's reference as a page, rendered from its OpenAPI document.

The usual interactive viewers load their scripts from a CDN, which a hospital's
closed network may not reach and the pages' Content-Security-Policy refuses; this
page needs neither.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from daemon.web.rendering import render
from daemon.web.security import signed_in

router = APIRouter(include_in_schema=False)
METHODS = ("get", "post", "put", "patch", "delete")


def type_name(schema: dict[str, Any]) -> str:
    """A schema's type as a reader says it: ``string``, ``list of WorklistItemOut``..."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        kinds = [type_name(s) for s in schema["anyOf"] if s.get("type") != "null"]
        nullable = any(s.get("type") == "null" for s in schema["anyOf"])
        return " or ".join(kinds) + (" (or null)" if nullable else "")
    if schema.get("type") == "array":
        return f"list of {type_name(schema.get('items', {}))}"
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    kind = str(schema.get("type", "any"))
    return f"{kind} ({schema['format']})" if "format" in schema else kind


def operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every operation of the document, in path order, shaped for the page."""
    found = []
    for path, item in sorted(spec.get("paths", {}).items()):
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            body = op.get("requestBody", {}).get("content", {})
            found.append(
                {
                    "path": path,
                    "method": method,
                    "anchor": f"{method}-{path}".replace("/", "-")
                    .replace("{", "")
                    .replace("}", ""),
                    "summary": op.get("summary", ""),
                    "description": (op.get("description") or "").strip(),
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "required": p.get("required", False),
                            "type": type_name(p.get("schema", {})),
                            "description": p.get("description", "")
                            or p.get("schema", {}).get("description", ""),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "body": ", ".join(
                        f"{kind}: {type_name(content.get('schema', {}))}"
                        for kind, content in body.items()
                    ),
                    "responses": [
                        (code, answer.get("description", ""))
                        for code, answer in sorted(op.get("responses", {}).items())
                    ],
                }
            )
    return found


def schemas(spec: dict[str, Any]) -> list[tuple[str, list[dict[str, str]]]]:
    """The document's schemas with their fields."""
    out = []
    for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items()):
        fields = [
            {
                "name": field,
                "type": type_name(info),
                "description": str(info.get("description", "")),
            }
            for field, info in schema.get("properties", {}).items()
        ]
        if "enum" in schema:
            fields = [{"name": "(value)", "type": type_name(schema), "description": ""}]
        out.append((name, fields))
    return out


@router.get("/api")
def api_page(request: Request) -> Response:
    """The API reference (any signed-in user)."""
    signed_in(request)
    spec = request.app.openapi()
    return render(
        request,
        "api_docs.html",
        spec=spec,
        spec_url=request.app.openapi_url,
        operations=operations(spec),
        schemas=schemas(spec),
    )
