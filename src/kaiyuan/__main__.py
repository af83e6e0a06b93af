"""`python -m kaiyuan` runs the command line."""

from kaiyuan.cli.main import main

main()
