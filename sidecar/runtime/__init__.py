"""The HTTP runtime every role's server runs on: `serve` (the agent), `hub`, `emulate`, `injector`.

- `server.py`: `listening(...)`, the bounded aiohttp server (idle timeout, a connection cap that
  evicts the oldest, the open-files limit raised and the cap sized to fit it, with
  `client_connections()` left for a role's outgoing pool) and `Address`, the bound address.
- `errors.py`: aiohttp's and asyncio's error reports as rate-limited JSON lines (never the
  request bytes they quote).
- `tls.py`: `server_context(cert, key)` and `load_into` (a renewed pair), the server side of
  HTTPS: files read bounded and non-blocking, an encrypted key refused without a prompt (one
  ConfigError line).
- `lifecycle.py`: `until_signalled` and `serving(...)`, the one lifecycle: start the site, log
  once, wait for SIGTERM/SIGINT (or a quit event), clean up.
- `metrics.py`: what every role's registry shares (the build-info gauge, duration buckets).
- `http.py`: small answer helpers shared by the handlers.

How a role plugs in (the injector is the latest to have done so):
1. Write `async def run_<role>(settings: Settings, log: Log) -> int` that builds its
   `web.Application`. State that lives as long as the server (a poller, a cache, a client
   session) is owned by the app through `app.cleanup_ctx`: create it, store it under a typed
   `web.AppKey`, `yield`, close it. Handlers receive what they need through those AppKeys.
2. End it with `return await serving(app, settings.listen, log, "<role> listening",
   context=lambda address: {...})`: it starts the site (a busy port is a ConfigError naming
   the flag), logs that event once with the bound address, waits for SIGTERM/SIGINT (or a
   quit event), cleans up (the cleanup_ctx closes what the app owns) and returns 0. A role
   that needs a second site (the demo's emulator) opens it with `server.listening(...)`.
3. Add its settings as fields of `settings.Settings` (each declared once with `option(...)`)
   and one `Command(..., run="sidecar.<role>.server:run_<role>")` entry to
   `commands.COMMANDS`: the CLI builds its flags, variables, --help and exit-2 errors from it.
"""
