"""`python evaluate.py`: the same program as `pga-evaluate` (pga_tf/commands/evaluate.py; --help)."""

from pga_tf.commands import evaluate

if __name__ == "__main__":
    evaluate.main()
