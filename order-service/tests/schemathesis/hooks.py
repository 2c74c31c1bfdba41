"""Hooks for the OpenAPI fuzz test (tests/api/openapi.rs), loaded by schemathesis.toml.

Schema-valid (positive) cases are kept clear of the rules between values that JSON Schema cannot
state, so that positive_data_acceptance still catches a schema looser than the server's
validation. Negative cases are left alone.
"""

import uuid

import schemathesis

I64_MAX = 2**63 - 1


def _positive(case):
    return case.meta is not None and case.meta.generation.mode.is_positive


def _integers_as_integers(value):
    # JSON Schema counts 2.0 as an integer; serde's i64 does not, and clients write 2.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integers_as_integers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integers_as_integers(v) for v in value]
    return value


@schemathesis.hook
def map_case(context, case):
    if not _positive(case):
        return case
    if isinstance(case.body, (dict, list)):
        case.body = _integers_as_integers(case.body)
    if case.method == "POST" and case.path == "/v1/orders" and case.headers:
        # A key already used with another body is refused (422 idempotency-key-reused), and
        # generated keys repeat.
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    if case.method == "GET" and case.path in ("/v1/orders", "/v1/orders/{id}/history"):
        # A cursor is valid only as the server issued it (`next_cursor`).
        if case.query:
            case.query.pop("cursor", None)
    return case


@schemathesis.hook
def filter_case(context, case):
    if not _positive(case) or case.method != "POST" or case.path != "/v1/orders":
        return True
    body = case.body if isinstance(case.body, dict) else {}
    # The order total must fit in 64-bit minor units (422 on `items` otherwise).
    try:
        total = sum(i["quantity"] * i["unit_price_minor"] for i in body.get("items", []))
        total += body.get("shipping_minor", 0) + body.get("tax_minor", 0)
    except (KeyError, TypeError):
        return True
    return total <= I64_MAX
