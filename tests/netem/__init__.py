"""Network impairment for tests and benchmarks: a seeded loopback UDP relay
(`relay.py`), SDP candidate rewriting to route peers through it (`sdp.py`), and
network namespaces with veth pairs and nftables loss (`netns.py`)."""
