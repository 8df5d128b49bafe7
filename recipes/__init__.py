"""Run configs shipped with the package: `nano2 run tiny` finds recipes/tiny.yaml from any working directory.

`tiny.yaml` runs the whole recipe on one CPU machine; `micro.yaml` is CI's seconds-long cut of it; `nano2.yaml`
declares the paper's sizes and engines. Config paths inside a recipe are relative to the installed packages; a
recipe's `run_dir` is relative to the working directory."""
