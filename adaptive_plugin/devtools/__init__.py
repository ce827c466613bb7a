"""Developer tools: test doubles used by tests, benchmarks and the demo, never by the proxy.

`adaptive_plugin.devtools.fake_provider` is a fake OpenAI / Anthropic HTTP server on 127.0.0.1
with scripted per-key behaviours (ok, 401, 429, insufficient quota, 500, slow, connection reset,
flaky) and a call log. Importing this package has no side effects.
"""
