"""Training: what one step updates, when to step, save and stop, and the distribution plumbing.

trainer.py: Trainer (nets, optimizer, the method's parts and phases, the compiled step) and the
optimizer, strategy and dtype policy it is built with. loop.py: `fit` (when to step, log, draw
grids, save and stop) and `run(cfg)` (what train.py does, callable from Python).
distribution.py: strategies, chief/worker roles, weight digests. rendezvous.py: multi-worker
start-up. precision_probe.py: the 16-bit speed probe at start. Neither the trainer nor the loop
knows a method: the method's record (pga_tf/methods/) gives its losses, parts and later phases.
Importing this package loads no TensorFlow; its modules do.
"""
