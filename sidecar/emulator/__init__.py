"""The Layers API emulator role: `app.py` (GET /v1/whoami and the control API), `scenario.py`
(what it answers, pure, readable without loading a server) and `demo.py` (`emulate`, `demo`)."""
