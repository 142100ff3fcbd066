"""`python -m herald_cli`: the same as the `herald` command."""

from herald_cli.app import main

main()
