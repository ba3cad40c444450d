"""`python export_savedmodel.py`: the same program as `pga-export` (pga_tf/commands/export_savedmodel.py;
--help)."""

from pga_tf.commands import export_savedmodel

if __name__ == "__main__":
    export_savedmodel.main()
