"""Training: what one step updates, when to step, save and stop, and the distribution plumbing.

loop.py: Trainer (nets, optimizer, the method's parts and phases, the compiled step), `fit` (the
loop) and `run(cfg)` (what train.py does, callable from Python). distribution.py: strategies,
chief/worker roles, weight digests. rendezvous.py: multi-worker start-up. precision_probe.py: the
16-bit speed probe at start. The loop knows no method: the method's record (pga_tf/methods/) gives
its losses, parts and later phases. Importing this package loads no TensorFlow; its modules do.
"""
