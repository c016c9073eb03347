"""The test lab: real servers (proxies, upstreams, DNS, Redis) started on loopback ports."""
