"""Wiring any workload: the pure wiring, `inject` over manifests and the `injector` webhook."""
