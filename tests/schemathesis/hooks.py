"""Schemathesis hooks for Signet's admin API, loaded through SCHEMATHESIS_HOOKS by
tests/integration/schemathesis.rs.

`signet_error_body` is the admin API's error contract: every 4xx answer is a JSON object
with `error` and `error_description`, and every 400 also names the offending `field` and
the `rule` it broke (with `errors`, every broken rule).
"""

import json

import schemathesis


@schemathesis.check
def signet_error_body(ctx, response, case):
    """Every 4xx is a JSON error body; every 400 names the field and the rule."""
    status = response.status_code
    if not 400 <= status < 500 or response.request.method == "HEAD":
        return None
    content_type = ",".join(response.headers.get("content-type", []))
    if not content_type.split(";")[0].strip().lower().endswith("json"):
        raise AssertionError(f"{status} without a JSON body (Content-Type: {content_type!r})")
    try:
        body = json.loads(response.content)
    except ValueError as e:
        raise AssertionError(f"{status} with a body that is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise AssertionError(f"{status} with a JSON body that is not an object: {body!r}")
    for member in ("error", "error_description"):
        if not isinstance(body.get(member), str) or not body[member]:
            raise AssertionError(f"{status} without `{member}`: {body!r}")
    if status == 400:
        for member in ("field", "rule"):
            if not isinstance(body.get(member), str) or not body[member]:
                raise AssertionError(f"400 without `{member}`: {body!r}")
        errors = body.get("errors")
        if not isinstance(errors, list) or not errors:
            raise AssertionError(f"400 without `errors`: {body!r}")
        for e in errors:
            if not isinstance(e, dict) or not e.get("field") or not e.get("rule"):
                raise AssertionError(f"400 with an entry of `errors` that names no field: {body!r}")
    return None
