"""The API's docs page: the OpenAPI document rendered as one plain HTML page on the server.

Contract: the page is made from the same document ``/api/v1/openapi.json`` serves (so it
cannot disagree with it), with no script and nothing fetched from elsewhere: each operation
with its method, path, role, parameters, body schema and responses, grouped by tag.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 1.5rem;color:#222}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd}h3{font-size:1.05rem;margin:1.6rem 0 .3rem}
code,pre{font:13px/1.4 ui-monospace,monospace}pre{background:#f6f6f6;padding:.6rem;overflow:auto;max-height:24rem}
.method{display:inline-block;min-width:4.2rem;font-weight:700}.role{color:#666;font-size:.85rem;margin-left:.6rem}
table{border-collapse:collapse;margin:.3rem 0}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
details{margin:.3rem 0}nav a{margin-right:.8rem}
"""


def render(doc: dict[str, Any], *, openapi_url: str) -> str:
    info = doc["info"]
    schemas = doc["components"]["schemas"]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(info['title'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(info['title'])} <small>{escape(info['version'])}</small></h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        f'<p>The OpenAPI 3.1 document: <a href="{escape(openapi_url)}">{escape(openapi_url)}</a></p>',
        "<nav>"
        + "".join(f'<a href="#{escape(t["name"])}">{escape(t["name"])}</a>' for t in doc["tags"])
        + "</nav>",
    ]
    for tag in doc["tags"]:
        parts.append(f'<h2 id="{escape(tag["name"])}">{escape(tag["name"])}</h2>')
        parts.append(f"<p>{escape(tag.get('description', ''))}</p>")
        for path, methods in doc["paths"].items():
            for method, operation in methods.items():
                if tag["name"] in operation.get("tags", []):
                    parts.append(_operation(method, path, operation, schemas))
    parts.append("</body></html>")
    return "".join(parts)


def _operation(method: str, path: str, operation: dict[str, Any], schemas: dict[str, Any]) -> str:
    role = operation.get("x-conveyor-role")
    out = [
        f'<h3 id="{escape(operation["operationId"])}"><span class=method>{escape(method.upper())}</span>'
        f"<code>{escape(path)}</code>"
        + (f"<span class=role>{escape(role)}</span>" if role else "<span class=role>public</span>")
        + "</h3>",
        f"<p><b>{escape(operation.get('summary', ''))}</b></p>",
    ]
    if operation.get("description"):
        out.append("".join(f"<p>{escape(p)}</p>" for p in operation["description"].split("\n\n")))
    if operation.get("parameters"):
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{'yes' if p.get('required') else 'no'}</td><td><code>{escape(_brief(p['schema']))}</code></td>"
            f"<td>{escape(p.get('description', ''))}</td></tr>"
            for p in operation["parameters"]
        )
        out.append(
            f"<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th><th></th></tr>{rows}</table>"
        )
    body = operation.get("requestBody")
    if body:
        schema = body["content"]["application/json"]["schema"]
        out.append(_schema_block("body" + ("" if body.get("required") else " (optional)"), schema, schemas))
    for status, response in operation["responses"].items():
        content = response.get("content", {})
        if "application/json" in content:
            out.append(
                _schema_block(
                    f"{status}: {response['description']}", content["application/json"]["schema"], schemas
                )
            )
    problems = [
        s for s, r in operation["responses"].items() if "application/problem+json" in r.get("content", {})
    ]
    out.append(f"<p>Problems: {escape(', '.join(problems))}</p>")
    return "".join(out)


def _schema_block(title: str, schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    resolved = _resolve(schema, schemas, set())
    text = json.dumps(resolved, indent=2, ensure_ascii=False)
    return f"<details><summary>{escape(title)}</summary><pre>{escape(text)}</pre></details>"


def _resolve(schema: Any, schemas: dict[str, Any], seen: set[str]) -> Any:
    """The schema with references replaced by what they name (once per path: no cycles)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name in seen or name not in schemas:
                return {"$ref": name}
            return _resolve(schemas[name], schemas, seen | {name})
        return {key: _resolve(value, schemas, seen) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_resolve(item, schemas, seen) for item in schema]
    return schema


def _brief(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(_brief(s) for s in schema["anyOf"])
    kind = schema.get("type", "any")
    bounds = [f"{k}={schema[k]}" for k in ("minimum", "maximum", "maxLength") if k in schema]
    return f"{kind}" + (f" ({', '.join(bounds)})" if bounds else "")
