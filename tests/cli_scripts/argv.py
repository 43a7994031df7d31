"""Prints the arguments it was given, to check that the CLI passes them through like python."""
import sys

print("ARGV", sys.argv[1:])
