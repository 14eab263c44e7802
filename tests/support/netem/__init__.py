"""Network impairment for tests and benchmarks (the kernel here has no netem).

- `relay.py`: a seeded userspace UDP relay on loopback: loss, delay/jitter, blackouts;
- `sdp.py`: routes two peers through the relay by rewriting their host candidates;
- `netns.py`: a namespace + veth pair with nftables random RTP drop, always removed;
- `loss_call.py`: one measured call through the relay (stock or our receive path);
- `ns_call.py`: the same across a namespace, the receiver in a child process there;
- `ice.py`: a temporary swap of aioice's host addresses for the namespace caller.
"""
