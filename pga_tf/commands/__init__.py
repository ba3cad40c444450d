"""The programs: `pga-train`, `pga-evaluate`, `pga-export` and the tools' `pga-<tool>`.

Each module's `main()` is one program, run the same way by its console script (pyproject.toml's
[project.scripts]) and by its file at the checkout's root (`python train.py` calls
pga_tf.commands.train.main). Importing these modules loads no TensorFlow and defines no flag:
`main()` installs the console filter, then defines the program's flags and runs it, so a process
defines them once whichever way it started.
"""
