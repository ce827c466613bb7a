"""The only code that imports litellm or fastapi: thin glue from LiteLLM's hooks to our capabilities.

- `hooks.hooks`: the CustomLogger instance named in `litellm_settings.callbacks`.
- `auth.user_api_key_auth`: the function named in `general_settings.custom_auth`.
- `strategy.AdaptiveRoutingStrategy`: installed on the proxy's router at start-up.
- `cache_backend.AdaptiveCacheBackend`: LiteLLM cache backend over the semantic cache.
- `admin_api.router`: the `/adaptive/*` admin API mounted on the proxy app.
"""
