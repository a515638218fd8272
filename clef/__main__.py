"""``python -m clef`` runs the command line."""

from clef.cli import main

main()
