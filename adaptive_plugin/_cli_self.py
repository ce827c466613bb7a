"""`adaptive-plugin self ...`: a project admin's self-service from the shell, over HTTP.

The same operations as the `/adaptive/self` API (and the dashboard), with a project admin key
(`pak-...`) in ADAPTIVE_ADMIN_KEY against the gateway in ADAPTIVE_GATEWAY_URL (or --url). The
operator may use the master key there and name the project with --project. Prints JSON; an
error the gateway answers is one line with its HTTP status (exit status 1).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import httpx

from adaptive_plugin.errors import AdaptiveError

DEFAULT_URL = "http://127.0.0.1:4000"
SELF = "/adaptive/self"


def http_call(url: str, key: str, method: str, path: str, **kwargs: Any) -> Any:
    """One call to the gateway; AdaptiveError with the gateway's own message when it refuses."""
    try:
        with httpx.Client(base_url=url.rstrip("/"), timeout=60) as client:
            response = client.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kwargs)
    except httpx.HTTPError as exc:
        raise AdaptiveError(f"cannot reach the gateway at {url}: {exc}") from None
    if response.status_code >= 400:
        raise AdaptiveError(f"{_message(response)} (HTTP {response.status_code})")
    return response.json() if response.content else None


def _message(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.json())
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(detail, dict):
        return str(detail.get("message") or detail.get("error") or detail)
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):  # FastAPI's validation errors
        loc = [str(p) for p in detail[0].get("loc", ()) if p not in ("body", "query")]
        return f"{'.'.join(loc) or 'input'}: {detail[0].get('msg', 'invalid')}"
    return str(detail)


def _key() -> str:
    key = os.environ.get("ADAPTIVE_ADMIN_KEY", "").strip()
    if not key:
        raise AdaptiveError("set ADAPTIVE_ADMIN_KEY to your project admin key (pak-...) or, for the operator, the "
                            "master key with --project")
    return key


def _run(args: argparse.Namespace, method: str, path: str, *, params: dict[str, Any] | None = None,
         body: Any = None) -> int:
    query = {k: v for k, v in (params or {}).items() if v is not None}
    if args.project:
        query["project_id"] = args.project
    from adaptive_plugin.cli import print_json

    print_json(http_call(args.url, _key(), method, SELF + path, params=query, json=body))
    return 0


def _secret(args: argparse.Namespace) -> str:
    from adaptive_plugin.cli import read_secret

    return read_secret(args)


def cmd_project_update(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.fallback:
        body["fallback"] = args.fallback
    if args.clear_cost_bias:
        body["default_cost_bias"] = None
    elif args.cost_bias is not None:
        body["default_cost_bias"] = args.cost_bias
    if args.all_models:
        body["allowed_models"] = None
    elif args.allowed_models is not None:
        body["allowed_models"] = [m.strip() for m in args.allowed_models.split(",") if m.strip()]
    if args.cache is not None:
        body["cache_enabled"] = args.cache
    if not body:
        raise AdaptiveError("nothing to change: give at least one option (see --help)")
    return _run(args, "PATCH", "/project", body=body)


def cmd_key_add(args: argparse.Namespace) -> int:
    body = {"environment": args.environment, "provider": args.provider, "api_key": _secret(args),
            "priority": args.priority, "rpm_limit": args.rpm_limit, "spend_cap_period": args.spend_cap_period,
            "spend_cap_usd": str(args.spend_cap_usd) if args.spend_cap_usd is not None else None}
    return _run(args, "POST", "/provider-keys", body={k: v for k, v in body.items() if v is not None})


def cmd_key_update(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.priority is not None:
        body["priority"] = args.priority
    if args.no_spend_cap:
        body.update(spend_cap_usd=None, spend_cap_period=None)
    elif args.spend_cap_usd is not None or args.spend_cap_period is not None:
        body.update(spend_cap_usd=str(args.spend_cap_usd) if args.spend_cap_usd is not None else None,
                    spend_cap_period=args.spend_cap_period)
    if args.no_rpm_limit:
        body["rpm_limit"] = None
    elif args.rpm_limit is not None:
        body["rpm_limit"] = args.rpm_limit
    if not body:
        raise AdaptiveError("nothing to change: give at least one option (see --help)")
    return _run(args, "PATCH", f"/provider-keys/{args.key_id}", body=body)


def add_parser(sub: Any) -> None:
    """The `self` command group, on the operator CLI's subparsers."""
    from adaptive_plugin import cli

    top = sub.add_parser(
        "self", help="a project admin's self-service on a running gateway (ADAPTIVE_ADMIN_KEY=pak-...)",
        description="Manage one project through the gateway's self-service API with its admin key (pak-...) in "
                    "ADAPTIVE_ADMIN_KEY. The operator may use the master key and name the project with --project.")
    top.add_argument("--url", default=os.environ.get("ADAPTIVE_GATEWAY_URL", DEFAULT_URL),
                     help=f"the gateway (default: ADAPTIVE_GATEWAY_URL, else {DEFAULT_URL})")
    top.add_argument("--project", help="project id: required with the master key; with an admin key, only its own")
    groups = top.add_subparsers(dest="self_command", required=True, metavar="COMMAND")

    project = groups.add_parser("project", help="the project's settings").add_subparsers(
        dest="self_project", required=True, metavar="COMMAND")
    p = project.add_parser("show", help="plan, fallback, default cost bias, allowed models, cache, the gateway's models")
    p.set_defaults(func=lambda a: _run(a, "GET", "/project"))
    p = project.add_parser("update", help="change fallback, default cost bias, allowed models or the cache (not the plan)")
    p.add_argument("--fallback", choices=["pooled", "byok_only"],
                   help="when own keys cannot serve: use the gateway's pooled key, or fail the request")
    p.add_argument("--cost-bias", type=cli.cost_bias, help="default trade-off for model auto: 0 cheapest .. 1 best")
    p.add_argument("--clear-cost-bias", action="store_true", help="use the gateway's default cost bias again")
    p.add_argument("--allowed-models", metavar="MODELS", help="comma-separated model groups the project may use")
    p.add_argument("--all-models", action="store_true", help="allow every model group of the gateway")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                   help="serve and store answers in the semantic cache, or not")
    p.set_defaults(func=cmd_project_update)

    keys = groups.add_parser("provider-keys", help="the project's own provider keys").add_subparsers(
        dest="self_keys", required=True, metavar="COMMAND")
    p = keys.add_parser("list", help="keys with status, health, cooldown, spend and last use (never the key)")
    p.add_argument("--environment", choices=cli.ENVIRONMENTS, help="only this environment's keys")
    p.set_defaults(func=lambda a: _run(a, "GET", "/provider-keys", params={"environment": a.environment}))
    p = keys.add_parser("add", help="store a provider key (encrypted; never shown again)")
    cli.add_key_options(p)
    p.set_defaults(func=cmd_key_add)
    p = keys.add_parser("rotate", help="replace a key: the new one takes its place and the old one is revoked, at once")
    p.add_argument("key_id", help="the key to replace (pk_...), from `self provider-keys list`")
    p.add_argument("--api-key", help="the new key (prefer --key-stdin)")
    p.add_argument("--key-stdin", action="store_true", help=cli.KEY_INPUT_HELP)
    p.set_defaults(func=lambda a: _run(a, "POST", f"/provider-keys/{a.key_id}/rotate", body={"api_key": _secret(a)}))
    p = keys.add_parser("revoke", help="stop using a key, for good")
    p.add_argument("key_id", help="the key's id (pk_...), from `self provider-keys list`")
    p.set_defaults(func=lambda a: _run(a, "POST", f"/provider-keys/{a.key_id}/revoke"))
    p = keys.add_parser("update", help="change a key's priority, spending cap or rate limit")
    p.add_argument("key_id", help="the key's id (pk_...), from `self provider-keys list`")
    p.add_argument("--priority", type=cli.bounded_int(0, 10_000),
                   help="try order among this provider's keys of the environment: lower goes first")
    p.add_argument("--spend-cap-usd", type=cli.money, help=cli.CAP_HELP)
    p.add_argument("--spend-cap-period", choices=["day", "month"], help=cli.CAP_PERIOD_HELP)
    p.add_argument("--no-spend-cap", action="store_true", help="remove the spending cap")
    p.add_argument("--rpm-limit", type=cli.bounded_int(1, 1_000_000), help=cli.RPM_HELP)
    p.add_argument("--no-rpm-limit", action="store_true", help="remove the rate limit")
    p.set_defaults(func=cmd_key_update)
    p = keys.add_parser("reorder", help="set the try order of one environment's keys for one provider")
    p.add_argument("--environment", required=True, choices=cli.ENVIRONMENTS, help="the keys' environment")
    p.add_argument("--provider", required=True, help="the keys' provider")
    p.add_argument("key_ids", nargs="+", metavar="KEY_ID", help="every key of that provider that is not revoked, first tried first")
    p.set_defaults(func=lambda a: _run(a, "POST", "/provider-keys/reorder", body={
        "environment": a.environment, "provider": a.provider, "key_ids": a.key_ids}))

    api = groups.add_parser("api-keys", help="the project's chat API keys (ak-...)").add_subparsers(
        dest="self_api", required=True, metavar="COMMAND")
    p = api.add_parser("list", help="chat API keys (prefixes only)")
    p.add_argument("--environment", choices=cli.ENVIRONMENTS, help="only this environment's keys")
    p.set_defaults(func=lambda a: _run(a, "GET", "/api-keys", params={"environment": a.environment}))
    p = api.add_parser("create", help="create a chat API key (printed once)")
    p.add_argument("--environment", required=True, choices=cli.ENVIRONMENTS, help="the environment the key calls in")
    p.set_defaults(func=lambda a: _run(a, "POST", "/api-keys", params={"environment": a.environment}))
    p = api.add_parser("revoke", help="revoke a chat API key")
    p.add_argument("key_id", help="the key's id (ak_...), from `self api-keys list`")
    p.set_defaults(func=lambda a: _run(a, "POST", f"/api-keys/{a.key_id}/revoke"))

    p = groups.add_parser("requests", help="the project's request log, newest first, a page at a time")
    cli.add_log_filters(p)
    p.add_argument("--limit", type=cli.bounded_int(1, 500), default=50, help="rows per page, 1-500 (default %(default)s)")
    p.add_argument("--cursor", help="next_cursor of the previous page")
    p.set_defaults(func=lambda a: _run(a, "GET", "/requests", params={
        "environment": a.environment, "provider": a.provider, "key_source": a.key_source, "cache": a.cache,
        "since": a.since, "until": a.until, "limit": a.limit, "cursor": a.cursor}))

    p = groups.add_parser("usage", help="overhead fee and model cost from the ledger, grouped")
    p.add_argument("--group-by", default="day",
                   help="comma-separated: day, environment, provider, key_source, key_fingerprint, model_group, "
                        "cache (default %(default)s)")
    p.add_argument("--environment", choices=cli.ENVIRONMENTS, help="only this environment")
    p.add_argument("--since", type=cli.day, help="first UTC day, YYYY-MM-DD")
    p.add_argument("--until", type=cli.day, help="last UTC day, YYYY-MM-DD (inclusive)")
    p.set_defaults(func=lambda a: _run(a, "GET", "/usage", params={
        "group_by": a.group_by, "environment": a.environment, "since": a.since, "until": a.until}))


__all__ = ["add_parser", "http_call"]
