"""The hub role (`layers-sidecar hub`): a coalescing short-TTL cache of whoami answers per key.

`cache.py` is its pure core (entries, TTLs, the token bucket; the clock passed in);
`upstream.py` calls the Layers API and fills the cache; `server.py` is its HTTP edge and entry
(`run_hub`); `metrics.py` its registry."""
