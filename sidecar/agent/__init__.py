"""The agent role, one per pod: `check` (the init container's gate) and `serve` (the poller and
its probe app). The flow: `keys` (where the key comes from) → `poller` (schedules, calls
`whoami`, folds each answer through `outcome` and `readiness`) → its observers: `journal`
(logs), `metrics`, `readyfile`; `probes` serves the state, `check` turns it into an exit code.

Nothing is imported here: `check` must not pay for the server that `serve` needs."""
