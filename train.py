"""`python train.py`: the same program as `pga-train` (pga_tf/commands/train.py; --help)."""

from pga_tf.commands import train

if __name__ == "__main__":
    train.main()
